"""Test DAG: the sensor following IB_ARN in IB_MODE (poke, reschedule or deferrable), IB_GRACE not-found grace."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_imagebuilder.sensors import ImageBuilderImageSensor

MODE = os.environ.get("IB_MODE", "poke")

with DAG("ib_wait_modes", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    ImageBuilderImageSensor(
        task_id="wait",
        image_build_version_arn=os.environ.get("IB_ARN", "arn:aws:imagebuilder:us-east-1:123456789012:image/x/1.0.0/1"),
        mode="reschedule" if MODE == "reschedule" else "poke",
        deferrable=MODE == "deferrable",
        poke_interval=0.2,
        timeout=120,
        not_found_grace=float(os.environ.get("IB_GRACE", "120")),
        api_retry={"base_delay": 0.01, "max_delay": 0.05, "max_attempts": 5},
    )
