"""Test DAG: one task per AWS partition records the build-logs and AMI links of a build, as the operators do."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, BaseOperator

from airflow_imagebuilder.links import ImageBuilderAmiLink, ImageBuilderLogsLink

#: Per partition: (image build version ARN, first AMI region, AMI id, console domain).
BUILDS = {
    "aws": (
        "arn:aws:imagebuilder:us-east-1:123456789012:image/golden-base/1.0.0/1",
        "eu-west-1",
        "ami-0123456789abcdef0",
        "console.aws.amazon.com",
    ),
    "aws-cn": (
        "arn:aws-cn:imagebuilder:cn-north-1:123456789012:image/golden-base/2.3.0/4",
        "cn-northwest-1",
        "ami-0cafe0000000000cn",
        "console.amazonaws.cn",
    ),
    "aws-us-gov": (
        "arn:aws-us-gov:imagebuilder:us-gov-west-1:123456789012:image/golden-base/1.0.0/12",
        "us-gov-east-1",
        "ami-0900000000000f00d",
        "console.amazonaws-us-gov.com",
    ),
}


class RecordBuildLinks(BaseOperator):
    """Records the links of the build of ``partition`` in :data:`BUILDS`."""

    operator_extra_links = (ImageBuilderLogsLink(), ImageBuilderAmiLink())

    def __init__(self, *, partition: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.partition = partition

    def execute(self, context: Any) -> str:
        arn, region, ami, _ = BUILDS[self.partition]
        image = {"arn": arn, "name": "golden-base", "version": "/".join(arn.split("/")[-2:])}
        ImageBuilderLogsLink.record(context, self, arn, image)
        ImageBuilderAmiLink.record(context, self, arn, [{"region": region, "image": ami}])
        return arn


with DAG("ib_record_links", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    for partition in BUILDS:
        RecordBuildLinks(task_id=partition.replace("-", "_"), partition=partition)
