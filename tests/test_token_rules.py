"""The five client-token rules, proven through Airflow running the DAG against the emulator."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import load_dag, task_states, xcom

pytestmark = pytest.mark.usefixtures("airflow_db")

LOGICAL_DATE = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)


def run(monkeypatch: pytest.MonkeyPatch, *, logical_date: dt.datetime = LOGICAL_DATE, **env: str):
    for name in ("IB_WAIT", "IB_FORCE_REBUILD", "IB_TAG", "IB_CLIENT_TOKEN", "IB_DEFERRABLE", "IB_SENSOR_DEFERRABLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    dag = load_dag("create_and_wait.py", "ib_create_and_wait")
    return dag.test(logical_date=logical_date, run_after=logical_date)


def creates(emulator):
    return emulator.journal("CreateImage")


def test_chain_renders_templates_and_passes_the_arn_to_the_sensor(fast_emulator, monkeypatch):
    dag_run = run(monkeypatch)
    assert task_states(dag_run) == {"create": "success", "wait": "success"}
    [arn] = fast_emulator.state.image_arns()
    assert xcom(dag_run, "create") == arn
    assert xcom(dag_run, "wait") == arn
    request = fast_emulator.state.build(arn).request
    assert request["tags"] == {"run": dag_run.run_id, "variant": "base"}
    assert request["imageTestsConfiguration"] == {"imageTestsEnabled": True, "timeoutMinutes": 120}
    assert request["workflows"][0]["parameters"] == [{"name": "date", "value": ["2026-03-02"]}]
    assert request["imageRecipeArn"].endswith("image-recipe/golden-base/1.0.0")
    ami_ids = xcom(dag_run, "wait", "ami_ids")
    assert list(ami_ids) == ["us-east-1"] and ami_ids["us-east-1"].startswith("ami-")
    assert xcom(dag_run, "wait", "amis")[0]["image"] == ami_ids["us-east-1"]


def test_rule1_retry_while_in_flight_follows_the_first_build(fast_emulator, monkeypatch):
    fast_emulator.state.set_phase_seconds(2.0)
    first = run(monkeypatch, IB_WAIT="0")  # create returns while the build is in flight
    assert fast_emulator.state.statuses() and set(fast_emulator.state.statuses().values()) <= {
        "PENDING",
        "CREATING",
        "BUILDING",
        "TESTING",
        "DISTRIBUTING",
        "INTEGRATING",
        "AVAILABLE",
    }
    second = run(monkeypatch, IB_WAIT="1")  # the same task instance again: must follow, not rebuild
    assert first.run_id == second.run_id
    assert task_states(second)["create"] == "success"
    assert len(fast_emulator.state.image_arns()) == 1
    tokens = {entry.client_token for entry in creates(fast_emulator)}
    assert len(creates(fast_emulator)) == 2 and len(tokens) == 1


def test_rule2_retry_after_failed_build_starts_a_new_build(fast_emulator, monkeypatch):
    fast_emulator.fail_next_builds(phase="BUILDING", reason="Component install failed: exit 1")
    failed = run(monkeypatch, IB_WAIT="1")
    assert task_states(failed)["create"] == "failed"
    [failed_arn] = fast_emulator.state.image_arns()
    assert fast_emulator.state.status(failed_arn) == "FAILED"
    rerun = run(monkeypatch, IB_WAIT="1")
    assert task_states(rerun) == {"create": "success", "wait": "success"}
    arns = fast_emulator.state.image_arns()
    assert len(arns) == 2 and xcom(rerun, "create") == arns[1]
    tokens = [entry.client_token for entry in creates(fast_emulator)]
    # generation 0 (the failed build) re-sent once, then generation 1
    assert tokens[0] == tokens[1] != tokens[2]


def test_rule3_rerun_reuses_an_available_image_unless_forced(fast_emulator, monkeypatch):
    first = run(monkeypatch, IB_WAIT="1")
    first_arn, first_amis = xcom(first, "create"), xcom(first, "create", "ami_ids")
    rerun = run(monkeypatch, IB_WAIT="1")  # same run_id: the XComs above are replaced by the rerun's
    assert task_states(rerun) == {"create": "success", "wait": "success"}
    assert len(fast_emulator.state.image_arns()) == 1
    assert xcom(rerun, "create") == first_arn
    assert xcom(rerun, "create", "ami_ids") == first_amis
    forced = run(monkeypatch, IB_WAIT="1", IB_FORCE_REBUILD="1")
    assert task_states(forced)["create"] == "success"
    assert len(fast_emulator.state.image_arns()) == 2
    assert xcom(forced, "create") != first_arn


def test_rule4_changed_parameters_get_a_new_token_and_build(fast_emulator, monkeypatch):
    run(monkeypatch, IB_WAIT="1")
    changed = run(monkeypatch, IB_WAIT="1", IB_TAG="hardened")
    assert task_states(changed)["create"] == "success"
    assert len(fast_emulator.state.image_arns()) == 2
    assert not [entry for entry in creates(fast_emulator) if entry.outcome == "IdempotentParameterMismatchException"]
    assert len({entry.client_token for entry in creates(fast_emulator)}) == 2


def test_rule5_token_is_a_uuid_logged_and_in_xcom(fast_emulator, monkeypatch, capfd):
    dag_run = run(monkeypatch, IB_WAIT="1")
    token = xcom(dag_run, "create", "client_token")
    assert f"CreateImage with client token {token}" in capfd.readouterr().out
    assert len(token) == 36 and token.count("-") == 4
    assert [entry.client_token for entry in creates(fast_emulator)] == [token]


def test_user_client_token_is_used_verbatim(fast_emulator, monkeypatch):
    dag_run = run(monkeypatch, IB_WAIT="1", IB_CLIENT_TOKEN="my-token-1")
    assert xcom(dag_run, "create", "client_token") == "my-token-1"
    assert [entry.client_token for entry in creates(fast_emulator)] == ["my-token-1"]


def test_client_token_namespace_separates_deployments_sharing_an_account(fast_emulator, monkeypatch):
    """Staging and production: same DAG ids, same run, same request; one AWS account."""
    variable = "AIRFLOW__IMAGEBUILDER__CLIENT_TOKEN_NAMESPACE"
    outputs = {}
    for namespace in ("staging", "production", "production"):  # the second production: a blue/green move
        monkeypatch.setenv(variable, namespace)
        dag_run = run(monkeypatch, IB_WAIT="1")
        assert task_states(dag_run)["create"] == "success"
        outputs.setdefault(namespace, []).append((xcom(dag_run, "create"), xcom(dag_run, "create", "client_token")))
    assert len(fast_emulator.images()) == 2
    [staging], [production, moved] = outputs["staging"], outputs["production"]
    assert staging[0] != production[0] and staging[1] != production[1]
    assert moved == production  # the same namespace reuses the same build
