"""Console link to the image build."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class ImageBuilderImageLink(BaseAwsLink):
    """The image build version's page in the EC2 Image Builder console."""

    name = "Image Builder image"
    key = "imagebuilder_image"
    format_str = BASE_AWS_CONSOLE_LINK + "/imagebuilder/home?region={region_name}#/images/{image_arn}/details"

    def format_link(self, **kwargs: str) -> str:
        if "image_arn" in kwargs:
            kwargs = {**kwargs, "image_arn": quote(kwargs["image_arn"], safe=":")}
        return super().format_link(**kwargs)

    @classmethod
    def record(cls, context: Context, operator: Any, image_arn: str) -> None:
        """Persist the link for the UI and log it once, for readers of the task log."""
        region, partition = operator.hook.conn_region_name, operator.hook.conn_partition
        cls.persist(
            context=context, operator=operator, region_name=region, aws_partition=partition, image_arn=image_arn
        )
        domain = cls.get_aws_domain(partition) or "aws.amazon.com"
        operator.log.info(
            "Image Builder console: %s", cls().format_link(region_name=region, aws_domain=domain, image_arn=image_arn)
        )
