"""OpenLineage facets of an image build, for ``apache-airflow-providers-openlineage``.

An image build reads Image Builder resources (a recipe, an infrastructure and a distribution configuration, or an
image pipeline that names them) and produces the image build version and its artifacts: one AMI per region, or
container images.  The operators report these through the provider's ``get_openlineage_facets_on_start`` and
``get_openlineage_facets_on_complete`` methods, which delegate here.  OpenLineage is imported inside the functions
only, so nothing of it is loaded when the provider is not installed (and the provider never calls them then).

Dataset names follow OpenLineage's convention for AWS resources (as for Glue tables): the namespace is the ARN up
to the resource (``arn:<partition>:<service>:<region>:<account>``), the name is the ARN's resource part:

- recipes, infrastructure and distribution configurations, image pipelines, image build versions:
  ``arn:aws:imagebuilder:us-east-1:123456789012`` + ``image-recipe/golden-base/1.0.0``;
- AMIs: ``arn:aws:ec2:eu-west-1:`` + ``image/ami-0123456789abcdef0`` (an AMI's ARN has no account, so any task
  that knows the AMI id and region names it the same);
- container images: ``arn:aws:ecr:us-east-1:123456789012`` + ``repository/golden-base:1.0.0-1`` (the ECR
  repository ARN's resource with the image URI's tag or digest).

The image build version is an output too, so a later build whose recipe starts from it (``parentImage``) links
up; its ARN is also the run's ``externalQuery`` facet (source ``imagebuilder``), the way the Amazon provider
reports an Athena query execution id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

#: ``source`` of the ``externalQuery`` run facet that carries the image build version ARN.
EXTERNAL_SOURCE = "imagebuilder"
#: Operator attributes naming the Image Builder resources a build reads.
INPUT_ATTRIBUTES = (
    "image_pipeline_arn",
    "image_recipe_arn",
    "container_recipe_arn",
    "infrastructure_configuration_arn",
    "distribution_configuration_arn",
)
_ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")

#: (namespace, name) of an OpenLineage dataset.
DatasetId = tuple[str, str]


def arn_dataset(arn: Any) -> DatasetId | None:
    """``(namespace, name)`` of the resource an ARN names; None for anything that is not an ARN."""
    if not isinstance(arn, str):
        return None
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or not all(parts[1:3]) or not parts[5]:
        return None
    return ":".join(parts[:5]), parts[5]


def input_datasets(operator: Any) -> list[DatasetId]:
    """The Image Builder resources the operator's (rendered) request names, in a fixed order."""
    found = (arn_dataset(getattr(operator, attribute, None)) for attribute in INPUT_ATTRIBUTES)
    return [dataset for dataset in found if dataset is not None]


def ami_dataset(partition: str, region: str, ami_id: str) -> DatasetId:
    """The AMI ``ami_id`` of ``region``: its ARN ``arn:<partition>:ec2:<region>::image/<ami id>``, split."""
    return f"arn:{partition}:ec2:{region}:", f"image/{ami_id}"


def container_image_dataset(partition: str, uri: str) -> DatasetId:
    """A container image URI ``<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>`` as a dataset.

    The namespace is the ECR repository ARN's prefix; the name is ``repository/<repository>`` with the URI's tag
    (or digest).  A URI outside ECR keeps its registry host as namespace and its path as name.
    """
    host, _, reference = uri.partition("/")
    match = _ECR_HOST.match(host)
    if match is None or not reference:
        return host, reference
    return f"arn:{partition}:ecr:{match['region']}:{match['account']}", f"repository/{reference}"


def output_datasets(
    image_build_version_arn: str | None, amis: Iterable[Mapping[str, Any]], container_image_uris: Iterable[str]
) -> list[DatasetId]:
    """The image build version, then its AMIs (in the order of the ``amis`` XCom), then its container images."""
    image = arn_dataset(image_build_version_arn)
    if image is None:
        return []
    partition = image[0].split(":")[1]
    outputs = [image]
    outputs += [
        ami_dataset(partition, str(ami["region"]), str(ami["image"]))
        for ami in amis
        if ami.get("region") and ami.get("image")
    ]
    outputs += [container_image_dataset(partition, str(uri)) for uri in container_image_uris if uri]
    return outputs


def facets_on_start(operator: Any) -> OperatorLineage:
    """Inputs known once the request is rendered: the recipe, infrastructure and distribution configurations
    (or the image pipeline)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=[Dataset(namespace=ns, name=name) for ns, name in input_datasets(operator)])


def facets_on_complete(operator: Any, task_instance: Any) -> OperatorLineage:
    """Inputs, plus the image build version and its AMIs or container images read back from the task's XComs.

    XComs: the return value (image build version ARN), ``amis`` and ``container_image_uris``.  A task that did
    not get that far (failed, or ``do_xcom_push=False``) reports what it has.
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset, ExternalQueryRunFacet
    from airflow.providers.openlineage.extractors import OperatorLineage

    returned = _own_xcom(task_instance, "return_value")
    arn = returned if arn_dataset(returned) is not None else None
    outputs = output_datasets(
        arn, _own_xcom(task_instance, "amis") or [], _own_xcom(task_instance, "container_image_uris") or []
    )
    run_facets: dict[str, Any] = {}
    if arn is not None:
        run_facets["externalQuery"] = ExternalQueryRunFacet(externalQueryId=arn, source=EXTERNAL_SOURCE)
    return OperatorLineage(
        inputs=[Dataset(namespace=ns, name=name) for ns, name in input_datasets(operator)],
        outputs=[Dataset(namespace=ns, name=name) for ns, name in outputs],
        run_facets=run_facets,
    )


def _own_xcom(task_instance: Any, key: str) -> Any:
    """An XCom this task instance pushed (its own map index when mapped)."""
    return task_instance.xcom_pull(task_ids=task_instance.task_id, key=key, map_indexes=task_instance.map_index)
