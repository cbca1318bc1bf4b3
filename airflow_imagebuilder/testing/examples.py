"""The resources the example DAGs name, created with the boto3 calls infrastructure code makes.

The demo, the real-engine test and users trying the examples against a strict emulator seed it with
:func:`seed_example_resources`; against real AWS the same resources come from Terraform, CloudFormation or CDK.
"""

from __future__ import annotations

from typing import Any

#: Regions the example distribution configuration copies AMIs to.
EXAMPLE_REGIONS = ("us-east-1", "eu-west-1")


def seed_example_resources(imagebuilder: Any) -> dict[str, str]:
    """Create the golden-base recipe, its infrastructure and distribution configurations and the nightly pipeline.

    :param imagebuilder: a boto3 ``imagebuilder`` client (pointed at the emulator).
    :return: the ARNs created, by name: ``recipe``, ``infrastructure``, ``distribution``, ``pipeline``.
    """
    recipe = imagebuilder.create_image_recipe(
        name="golden-base",
        semanticVersion="1.0.0",
        parentImage="arn:aws:imagebuilder:us-east-1:aws:image/amazon-linux-2023-x86/x.x.x",
        components=[{"componentArn": "arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x"}],
    )["imageRecipeArn"]
    infrastructure = imagebuilder.create_infrastructure_configuration(
        name="golden-build", instanceProfileName="EC2InstanceProfileForImageBuilder", instanceTypes=["t3.large"]
    )["infrastructureConfigurationArn"]
    distribution = imagebuilder.create_distribution_configuration(
        name="golden-regions",
        distributions=[
            {"region": region, "amiDistributionConfiguration": {"name": "golden-base-{{ imagebuilder:buildDate }}"}}
            for region in EXAMPLE_REGIONS
        ],
    )["distributionConfigurationArn"]
    pipeline = imagebuilder.create_image_pipeline(
        name="golden-nightly",
        imageRecipeArn=recipe,
        infrastructureConfigurationArn=infrastructure,
        distributionConfigurationArn=distribution,
        imageTestsConfiguration={"imageTestsEnabled": True, "timeoutMinutes": 90},
        imageTags={"pipeline": "golden-nightly"},
    )["imagePipelineArn"]
    return {"recipe": recipe, "infrastructure": infrastructure, "distribution": distribution, "pipeline": pipeline}
