"""The example DAGs parse cleanly and have the shape the README describes."""

from __future__ import annotations

import pytest

from tests.engine import ROOT

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_example_dags_parse_without_errors():
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {
        "imagebuilder_golden_ami",
        "imagebuilder_weekly_rebuild",
        "imagebuilder_rollout",
        "imagebuilder_pipeline_nightly",
    }
    chain = bag.dags["imagebuilder_golden_ami"]
    assert [task.task_id for task in chain.topological_sort()] == ["create_image", "wait_for_image", "publish_ami"]
    assert chain.get_task("wait_for_image").deferrable
    weekly = bag.dags["imagebuilder_weekly_rebuild"]
    assert weekly.catchup and weekly.schedule == "0 4 * * 1"
