"""Apache Airflow provider for AWS EC2 Image Builder."""

#: The one version source: pyproject.toml reads it (``[tool.setuptools.dynamic]``), and so does the provider info.
__version__ = "0.1.0"
