"""Provider metadata read by Airflow's providers manager (``apache_airflow_provider`` entry point)."""

from __future__ import annotations

from typing import Any

from airflow_imagebuilder import __version__

#: The project's documentation (its README, on the package's index page); pyproject.toml's [project.urls]
#: Documentation says the same.
DOCUMENTATION_URL = "https://pypi.org/project/airflow-imagebuilder/"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-imagebuilder",
        "name": "EC2 Image Builder",
        "description": "Build AMIs and container images with AWS EC2 Image Builder's CreateImage, "
        "idempotently and deferrably.",
        "documentation-url": DOCUMENTATION_URL,
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Amazon EC2 Image Builder",
                "external-doc-url": "https://aws.amazon.com/image-builder/",
                "tags": ["aws"],
            }
        ],
        "operators": [
            {"integration-name": "Amazon EC2 Image Builder", "python-modules": ["airflow_imagebuilder.operators"]}
        ],
        "sensors": [
            {"integration-name": "Amazon EC2 Image Builder", "python-modules": ["airflow_imagebuilder.sensors"]}
        ],
        "hooks": [{"integration-name": "Amazon EC2 Image Builder", "python-modules": ["airflow_imagebuilder.hooks"]}],
        "triggers": [
            {"integration-name": "Amazon EC2 Image Builder", "python-modules": ["airflow_imagebuilder.triggers"]}
        ],
        "extra-links": [
            "airflow_imagebuilder.links.ImageBuilderImageLink",
            "airflow_imagebuilder.links.ImageBuilderLogsLink",
            "airflow_imagebuilder.links.ImageBuilderAmiLink",
        ],
        "config": {
            "imagebuilder": {
                "description": "Settings of the EC2 Image Builder provider (airflow-imagebuilder).",
                "options": {
                    "client_token_namespace": {
                        "description": "Enters every client token the operators derive. Deployments that share "
                        "an AWS account and DAG ids (staging and production) set different namespaces, so they "
                        "never follow or reuse each other's builds; keep it when moving a deployment (blue/green) "
                        "so the new one keeps reusing the old one's builds. Empty: no namespace.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "production",
                        "default": "",
                    }
                },
            }
        },
    }
