"""Fault injection: 429 with Retry-After, 5xx, expired sessions, dropped connections,
failures after a committed write; configured at start or through the admin endpoint."""

from __future__ import annotations

import uuid

import httpx
import pytest
from casebridge_creatio.sandbox import FaultSettings
from conftest import RunningSandbox, StartSandbox


def set_faults(client: httpx.Client, **faults: object) -> httpx.Response:
    return client.post("/sandbox/admin/faults", json=faults)


def test_throttle_carries_retry_after(session: httpx.Client) -> None:
    assert set_faults(session, throttle_rate=1.0, retry_after_s=7).status_code == 200
    answer = session.get("/0/odata/Case")
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "7"
    set_faults(session, throttle_rate=0.0)
    assert session.get("/0/odata/Case").status_code == 200


def test_dropped_connection_is_a_transport_error(session: httpx.Client) -> None:
    set_faults(session, script=["drop"])
    with pytest.raises(httpx.TransportError):
        session.get("/0/odata/Case")
    assert session.get("/0/odata/Case").status_code == 200
    assert session.get("/sandbox/admin/stats").json()["faults_injected"]["drop"] == 1


def test_expired_session_forces_a_new_login(sandbox: RunningSandbox) -> None:
    client = sandbox.login()
    set_faults(client, script=["expire"])
    assert client.get("/0/odata/Case").status_code == 401
    assert client.get("/0/odata/Case").status_code == 401
    fresh = sandbox.login()
    assert fresh.get("/0/odata/Case").status_code == 200
    client.close()
    fresh.close()


def test_fail_after_write_commits_then_answers_500(session: httpx.Client) -> None:
    set_faults(session, script=["fail_after_write"], fail_after_write_mode="500")
    case_id = str(uuid.uuid4())
    answer = session.post("/0/odata/Case", json={"Id": case_id, "Subject": "ambiguous"})
    assert answer.status_code == 500
    assert session.get(f"/0/odata/Case({case_id})").status_code == 200


def test_fail_after_write_can_drop(session: httpx.Client) -> None:
    set_faults(session, script=["fail_after_write"], fail_after_write_mode="drop")
    case_id = str(uuid.uuid4())
    with pytest.raises(httpx.TransportError):
        session.post("/0/odata/Case", json={"Id": case_id, "Subject": "ambiguous"})
    assert session.get(f"/0/odata/Case({case_id})").status_code == 200


def outcomes(running: RunningSandbox, n: int) -> list[int]:
    client = running.login()
    client.post("/sandbox/admin/faults", json={"error_rate": 0.5, "seed": 42})
    result = [client.get("/0/odata/CaseStatus").status_code for _ in range(n)]
    client.close()
    return result


def test_random_faults_are_deterministic_with_a_seed(start_sandbox: StartSandbox) -> None:
    first, second = outcomes(start_sandbox(), 30), outcomes(start_sandbox(), 30)
    assert first == second
    assert set(first) == {200, 500}


def test_configured_faults_and_latency_apply_from_start(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(faults=FaultSettings(latency_ms=5, script=("5xx",)))
    with running.client() as client:
        answer = client.post("/ServiceModel/AuthService.svc/Login",
                             json={"UserName": "Supervisor", "UserPassword": "Supervisor"})
        assert answer.status_code == 500
        assert client.get("/sandbox/admin/faults").json()["latency_ms"] == 5


def test_bad_fault_settings_are_refused(session: httpx.Client) -> None:
    assert set_faults(session, error_rate=2).status_code == 400
    assert "unknown" in set_faults(session, explode=True).json()["error"]
    assert set_faults(session, script=["meteor"]).status_code == 400


def test_stats_count_round_trips_and_reset_clears(session: httpx.Client) -> None:
    session.get("/0/odata/Case")
    session.get("/0/odata/Case")
    session.post("/0/odata/$batch", json={"requests": [
        {"id": "1", "method": "POST", "url": "Case", "body": {"Subject": "x"}}]})
    stats = session.get("/sandbox/admin/stats").json()
    assert stats["by_route"]["GET Case"] == 2
    assert stats["by_route"]["POST $batch"] == 1
    assert stats["batch_operations"]["POST Case"] == 1
    assert session.post("/sandbox/admin/reset").status_code == 200
    assert session.get("/sandbox/admin/stats").json()["requests"] == 0
    assert session.get("/0/odata/Case").status_code == 401
