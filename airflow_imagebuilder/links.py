"""Console links of an image build: the image, its build logs in CloudWatch, its first AMI in EC2.

Each link is persisted to XCom by the task (``record``) and rendered by Airflow from what was stored, so a link
keeps working after the task ends.  Region and partition come from the ARNs the build itself reported, so the
links open the right console (``aws``, ``aws-cn``, ``aws-us-gov``) whatever the connection says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = [
    "ImageBuilderAmiLink",
    "ImageBuilderImageLink",
    "ImageBuilderLogsLink",
]

#: Image Builder's build logs go to ``/aws/imagebuilder/<image name>`` unless the image's
#: ``loggingConfiguration.logGroupName`` names another group.
DEFAULT_LOG_GROUP_PREFIX = "/aws/imagebuilder/"


def arn_partition_and_region(arn: str) -> tuple[str, str]:
    """``(partition, region)`` of an ARN, e.g. ``("aws-cn", "cn-north-1")``."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn" or not parts[1] or not parts[3]:
        raise ValueError(f"{arn!r} is not an ARN with a partition and a region")
    return parts[1], parts[3]


def _partition_and_region(arn: str, operator: Any) -> tuple[str, str]:
    """The ARN's partition and region; the connection's for a malformed ARN, so a link never fails a task."""
    try:
        return arn_partition_and_region(arn)
    except ValueError:
        return operator.hook.conn_partition, operator.hook.conn_region_name


def build_log_location(image: Mapping[str, Any]) -> tuple[str, str | None]:
    """Where Image Builder writes the build log of an image: ``(log group, log stream or None)``.

    ``image`` is GetImage's ``image`` (``{"arn": ...}`` alone will do).  The log group is the image's
    ``loggingConfiguration.logGroupName`` when set, else the service default ``/aws/imagebuilder/<image name>``;
    the stream is ``<image version>/<build version>`` (``1.0.0/3``), the build version's own stream in that group.
    The image name is the image's ``name``; without it, the name in the ARN, which the service lowercases
    (a name with capitals or spaces is then only approximated).
    """
    arn = str(image.get("arn") or "")
    # arn:<partition>:imagebuilder:<region>:<account>:image/<name>/<version>/<build version>
    resource = arn.split(":", 5)[-1].split("/")
    arn_name, arn_stream = (
        (resource[1], f"{resource[2]}/{resource[3]}") if len(resource) == 4 and resource[0] == "image" else (None, None)
    )
    group = (image.get("loggingConfiguration") or {}).get("logGroupName")
    if not group:
        name = image.get("name") or arn_name
        if not name:
            raise ValueError(f"Cannot tell the log group of image {arn or image!r}: it has no name and no image ARN")
        group = DEFAULT_LOG_GROUP_PREFIX + str(name)
    version = str(image.get("version") or "")
    return str(group), version if "/" in version else arn_stream


def _console_escape(value: str) -> str:
    """Escape a log group or stream name the way the CloudWatch console writes it in its URLs.

    The console's ``#logsV2:`` fragment is percent-encoded twice with ``$`` for ``%`` (``/`` is ``$252F``).
    """
    return quote(quote(value, safe=""), safe="").replace("%", "$")


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
        partition, region = _partition_and_region(image_arn, operator)
        cls.persist(
            context=context, operator=operator, region_name=region, aws_partition=partition, image_arn=image_arn
        )
        domain = cls.get_aws_domain(partition) or "aws.amazon.com"
        operator.log.info(
            "Image Builder console: %s", cls().format_link(region_name=region, aws_domain=domain, image_arn=image_arn)
        )


class ImageBuilderLogsLink(BaseAwsLink):
    """The build's CloudWatch log group (its build version's log stream when known) in the CloudWatch console."""

    name = "Image Builder build logs"
    key = "imagebuilder_logs"
    format_str = BASE_AWS_CONSOLE_LINK + "/cloudwatch/home?region={region_name}#logsV2:log-groups/log-group/{log_group}"

    def format_link(self, **kwargs: Any) -> str:
        if not kwargs.get("log_group"):
            return ""
        stream = kwargs.get("log_stream")
        link = super().format_link(**{**kwargs, "log_group": _console_escape(kwargs["log_group"])})
        return f"{link}/log-events/{_console_escape(stream)}" if link and stream else link

    @classmethod
    def record(cls, context: Context, operator: Any, image_arn: str, image: Mapping[str, Any] | None = None) -> None:
        """Persist the link for the UI and log it once.

        ``image`` is GetImage's ``image`` when at hand: it has the image's own name and its
        ``loggingConfiguration``; without it the log group is the default one, named after the ARN (see
        :func:`build_log_location`).
        """
        partition, region = _partition_and_region(image_arn, operator)
        log_group, log_stream = build_log_location({"arn": image_arn, **(image or {})})
        cls.persist(
            context=context,
            operator=operator,
            region_name=region,
            aws_partition=partition,
            log_group=log_group,
            log_stream=log_stream,
        )
        link = cls().format_link(
            region_name=region,
            aws_domain=cls.get_aws_domain(partition) or "aws.amazon.com",
            log_group=log_group,
            log_stream=log_stream,
        )
        operator.log.info("Build logs: log group %s, log stream %s: %s", log_group, log_stream or "unknown", link)


class ImageBuilderAmiLink(BaseAwsLink):
    """The image's first AMI in the EC2 console of that AMI's region."""

    name = "AMI"
    key = "imagebuilder_ami"
    format_str = BASE_AWS_CONSOLE_LINK + "/ec2/home?region={region_name}#ImageDetails:imageId={ami_id}"

    @classmethod
    def record(cls, context: Context, operator: Any, image_arn: str, amis: Sequence[Mapping[str, Any]]) -> None:
        """Persist the link to the first of ``amis`` (the ``amis`` XCom) and log it once.

        No AMI (not AVAILABLE yet, or a container image): the link is stored as empty (``{}``: Airflow 3.0's
        execution API refuses a null value), which Airflow shows as no link, so that Airflow reading every link when
        the task defers or ends finds this one.  The partition is the
        image build version's (an image distributes within its own partition).
        """
        first = next((ami for ami in amis if ami.get("image") and ami.get("region")), None)
        if first is None:
            if operator.do_xcom_push:
                context["ti"].xcom_push(key=cls.key, value={})
            return
        partition, _ = _partition_and_region(image_arn, operator)
        region, ami_id = str(first["region"]), str(first["image"])
        cls.persist(context=context, operator=operator, region_name=region, aws_partition=partition, ami_id=ami_id)
        link = cls().format_link(
            region_name=region, aws_domain=cls.get_aws_domain(partition) or "aws.amazon.com", ami_id=ami_id
        )
        operator.log.info("AMI %s in %s: %s", ami_id, region, link)


def record_build_links(context: Context, operator: Any, image_arn: str, image: Mapping[str, Any] | None) -> None:
    """The links of a build the task has just started or found: its image and build logs, and an AMI link that
    stays empty until the image is AVAILABLE (``image``: GetImage's ``image`` when at hand, or the request)."""
    ImageBuilderImageLink.record(context, operator, image_arn)
    ImageBuilderLogsLink.record(context, operator, image_arn, image)
    ImageBuilderAmiLink.record(context, operator, image_arn, [])
