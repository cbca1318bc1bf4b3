"""Fault soak: 200 task tries through Airflow with 20% of calls failing and 5% of responses lost."""

from __future__ import annotations

import collections
import datetime as dt

import pytest

from tests.conftest import load_dag

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]
TASKS = 200


def test_soak_no_duplicates_no_failed_tasks(fast_emulator, monkeypatch, capsys):
    monkeypatch.setenv("IB_SOAK_TASKS", str(TASKS))
    fast_emulator.state.set_phase_seconds(0.01)
    fast_emulator.add_fault_mix(error_share=0.20, drop_share=0.05)  # 429/500/503 in equal parts, lost responses
    dag = load_dag("soak.py", "ib_soak")
    dag_run = dag.test(logical_date=dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc))

    states = collections.Counter(str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances())
    journal = fast_emulator.journal()
    outcomes = collections.Counter(entry.outcome for entry in journal)
    creates = [entry for entry in journal if entry.operation == "CreateImage"]
    images_per_token = collections.Counter(entry.image_arn for entry in creates if entry.image_arn)
    arns = fast_emulator.state.image_arns()
    faulted = sum(count for outcome, count in outcomes.items() if outcome != "ok")
    duplicates = len(arns) - TASKS
    with capsys.disabled():
        print(
            f"\nSOAK tasks={TASKS} task_states={dict(states)} calls={len(journal)} "
            f"faulted={faulted} ({faulted / len(journal):.1%}) dropped={outcomes['dropped']} "
            f"errors={ {k: v for k, v in outcomes.items() if k not in ('ok', 'dropped')} } "
            f"creates={len(creates)} images={len(arns)} duplicate_images={duplicates} "
            f"failed_tasks={states.get('failed', 0)}"
        )
    assert states == {"success": TASKS}
    assert duplicates == 0 and len(images_per_token) == TASKS
    assert set(fast_emulator.state.statuses().values()) == {"AVAILABLE"}
    assert 0.20 <= faulted / len(journal) <= 0.30
