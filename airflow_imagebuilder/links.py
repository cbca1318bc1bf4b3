"""Console link to the image build."""

from __future__ import annotations

from urllib.parse import quote

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink


class ImageBuilderImageLink(BaseAwsLink):
    """The image build version's page in the EC2 Image Builder console."""

    name = "Image Builder image"
    key = "imagebuilder_image"
    format_str = BASE_AWS_CONSOLE_LINK + "/imagebuilder/home?region={region_name}#/images/{image_arn}/details"

    def format_link(self, **kwargs: str) -> str:
        if "image_arn" in kwargs:
            kwargs = {**kwargs, "image_arn": quote(kwargs["image_arn"], safe=":")}
        return super().format_link(**kwargs)
