"""Console links: where the build logs are, the URLs per partition, and the links as Airflow stores and renders them."""

from __future__ import annotations

import datetime as dt
from typing import Any
from unittest import mock

import pytest

from airflow_imagebuilder.links import (
    ImageBuilderAmiLink,
    ImageBuilderImageLink,
    ImageBuilderLogsLink,
    build_log_location,
)
from tests.conftest import load_dag, task_states, xcom
from tests.dags.record_links import BUILDS


def expected_logs_url(partition: str) -> str:
    arn, _, _, domain = BUILDS[partition]
    region = arn.split(":")[3]
    version, build = arn.split("/")[-2:]
    return (
        f"https://{domain}/cloudwatch/home?region={region}#logsV2:log-groups/log-group/"
        f"$252Faws$252Fimagebuilder$252Fgolden-base/log-events/{version}$252F{build}"
    )


def expected_ami_url(partition: str) -> str:
    _, region, ami, domain = BUILDS[partition]
    return f"https://{domain}/ec2/home?region={region}#ImageDetails:imageId={ami}"


def expected_image_url(partition: str) -> str:
    arn, _, _, domain = BUILDS[partition]
    region = arn.split(":")[3]
    return f"https://{domain}/imagebuilder/home?region={region}#/images/{arn.replace('/', '%2F')}/details"


# ----------------------------------------------------------------------------------------- log location
def test_log_location_defaults_to_the_service_group_named_after_the_image_and_the_build_version_stream():
    image = {
        "arn": "arn:aws:imagebuilder:us-east-1:123456789012:image/golden-base/1.0.0/3",
        "name": "Golden Base",
        "version": "1.0.0/3",
    }
    assert build_log_location(image) == ("/aws/imagebuilder/Golden Base", "1.0.0/3")


def test_log_location_uses_the_logging_configuration_group():
    image = {
        "arn": "arn:aws:imagebuilder:us-east-1:123456789012:image/golden-base/1.0.0/3",
        "name": "golden-base",
        "version": "1.0.0/3",
        "loggingConfiguration": {"logGroupName": "/platform/image-builds"},
    }
    assert build_log_location(image) == ("/platform/image-builds", "1.0.0/3")


def test_log_location_from_the_arn_alone():
    arn = "arn:aws-cn:imagebuilder:cn-north-1:123456789012:image/golden-base/2.3.0/4"
    assert build_log_location({"arn": arn}) == ("/aws/imagebuilder/golden-base", "2.3.0/4")
    assert build_log_location({"arn": arn, "loggingConfiguration": {}}) == ("/aws/imagebuilder/golden-base", "2.3.0/4")


def test_log_location_without_a_build_version_has_no_stream():
    assert build_log_location({"name": "golden-base", "version": "1.0.0"}) == ("/aws/imagebuilder/golden-base", None)


def test_log_location_needs_a_name_or_an_image_arn():
    recipe = "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/golden-base/1.0.0"
    with pytest.raises(ValueError, match="no name and no image ARN"):
        build_log_location({"arn": recipe})


# ------------------------------------------------------------------------------------------- rendering
class Recorder:
    """The operator side of ``record``: XComs pushed through ``context["ti"]``, the log."""

    def __init__(self) -> None:
        self.do_xcom_push = True
        self.log = mock.Mock()
        self.hook = mock.Mock(conn_partition="aws", conn_region_name="us-east-1")
        self.xcoms: dict[str, Any] = {}
        ti = mock.Mock()
        ti.xcom_push.side_effect = lambda key, value: self.xcoms.__setitem__(key, value)
        self.context: Any = {"ti": ti}

    def rendered(self, link: Any) -> str:
        """What Airflow renders from the stored value (``BaseAwsLink.get_link`` formats the XCom)."""
        return link.format_link(**self.xcoms[link.key])


@pytest.mark.parametrize("partition", sorted(BUILDS))
def test_links_render_for_each_partition_from_what_was_stored(partition):
    arn, region, ami, _ = BUILDS[partition]
    recorder = Recorder()
    ImageBuilderImageLink.record(recorder.context, recorder, arn)
    ImageBuilderLogsLink.record(recorder.context, recorder, arn)
    ImageBuilderAmiLink.record(
        recorder.context, recorder, arn, [{"region": region, "image": ami}, {"region": "x-1", "image": "ami-1"}]
    )
    assert recorder.rendered(ImageBuilderImageLink()) == expected_image_url(partition)
    assert recorder.rendered(ImageBuilderLogsLink()) == expected_logs_url(partition)
    assert recorder.rendered(ImageBuilderAmiLink()) == expected_ami_url(partition)
    logged = " ".join(str(call.args) for call in recorder.log.info.call_args_list)
    for url in (expected_image_url(partition), expected_logs_url(partition), expected_ami_url(partition)):
        assert url in logged


def test_logs_link_uses_the_images_own_group_name_and_escapes_it_like_the_console():
    recorder = Recorder()
    image = {"name": "Golden Base", "version": "1.0.0/1", "loggingConfiguration": {"logGroupName": "/team a/builds"}}
    ImageBuilderLogsLink.record(recorder.context, recorder, BUILDS["aws"][0], image)
    assert recorder.xcoms["imagebuilder_logs"]["log_group"] == "/team a/builds"
    assert recorder.rendered(ImageBuilderLogsLink()).endswith(
        "#logsV2:log-groups/log-group/$252Fteam$2520a$252Fbuilds/log-events/1.0.0$252F1"
    )


def test_logs_link_without_a_stream_opens_the_group():
    link = ImageBuilderLogsLink().format_link(
        region_name="us-east-1", aws_domain="aws.amazon.com", log_group="/aws/imagebuilder/x", log_stream=None
    )
    assert link == (
        "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:log-groups/log-group/"
        "$252Faws$252Fimagebuilder$252Fx"
    )
    assert ImageBuilderLogsLink().format_link(region_name="us-east-1", aws_domain="aws.amazon.com") == ""


def test_without_an_ami_the_ami_link_is_stored_empty():
    # Stored all the same, so that Airflow, reading every link when the task defers or ends, finds it (no
    # "XCom not found" error); BaseAwsLink.get_link renders an empty value as no link.
    recorder = Recorder()
    ImageBuilderAmiLink.record(recorder.context, recorder, BUILDS["aws"][0], [])
    assert recorder.xcoms == {ImageBuilderAmiLink.key: {}}
    recorder.log.info.assert_not_called()


def test_a_malformed_arn_falls_back_to_the_connections_partition_and_region():
    recorder = Recorder()
    ImageBuilderImageLink.record(recorder.context, recorder, "arn:not-an-image")
    assert recorder.xcoms["imagebuilder_image"]["region_name"] == "us-east-1"
    assert recorder.xcoms["imagebuilder_image"]["aws_domain"] == "aws.amazon.com"


def test_nothing_is_stored_when_the_task_does_not_push_xcoms():
    recorder = Recorder()
    recorder.do_xcom_push = False
    ImageBuilderLogsLink.record(recorder.context, recorder, BUILDS["aws"][0])
    assert recorder.xcoms == {}


def test_links_are_registered_with_the_provider():
    from airflow_imagebuilder.provider_info import get_provider_info

    links = get_provider_info()["extra-links"]
    for link in (ImageBuilderImageLink, ImageBuilderLogsLink, ImageBuilderAmiLink):
        assert f"{link.__module__}.{link.__name__}" in links


# ------------------------------------------------------------------------- through Airflow's XComs
@pytest.mark.usefixtures("airflow_db")
def test_links_are_persisted_and_rendered_by_airflow_for_each_partition():
    logical_date = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    dag_run = load_dag("record_links.py", "ib_record_links").test(logical_date=logical_date, run_after=logical_date)
    assert set(task_states(dag_run).values()) == {"success"}
    for partition in BUILDS:
        task_id = partition.replace("-", "_")
        # Airflow renders each extra link in the worker when the task ends and stores the URL the UI shows.
        assert xcom(dag_run, task_id, "_link_ImageBuilderLogsLink") == expected_logs_url(partition)
        assert xcom(dag_run, task_id, "_link_ImageBuilderAmiLink") == expected_ami_url(partition)


@pytest.mark.usefixtures("airflow_db")
def test_operator_and_sensor_store_the_three_links_of_a_build_against_the_emulator(fast_emulator, monkeypatch):
    monkeypatch.setenv("IB_WAIT", "1")
    logical_date = dt.datetime(2026, 5, 2, tzinfo=dt.UTC)
    dag_run = load_dag("create_and_wait.py", "ib_create_and_wait").test(
        logical_date=logical_date, run_after=logical_date
    )
    assert task_states(dag_run) == {"create": "success", "wait": "success"}
    [arn] = fast_emulator.state.image_arns()
    ami = xcom(dag_run, "create", "ami_ids")["us-east-1"]
    console = "https://console.aws.amazon.com"
    for task_id in ("create", "wait"):
        assert xcom(dag_run, task_id, "_link_ImageBuilderImageLink") == (
            f"{console}/imagebuilder/home?region=us-east-1#/images/{arn.replace('/', '%2F')}/details"
        )
        assert xcom(dag_run, task_id, "_link_ImageBuilderLogsLink") == (
            f"{console}/cloudwatch/home?region=us-east-1#logsV2:log-groups/log-group/"
            "$252Faws$252Fimagebuilder$252Fgolden-base/log-events/1.0.0$252F1"
        )
        assert xcom(dag_run, task_id, "_link_ImageBuilderAmiLink") == (
            f"{console}/ec2/home?region=us-east-1#ImageDetails:imageId={ami}"
        )
