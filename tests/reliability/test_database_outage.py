"""PostgreSQL goes away while the app server serves: every request is a quick 503 problem, never a hang or an HTML page,
and the app recovers by itself when the database is back (persistent connections are health-checked)."""

import time

import pytest

from tests.reliability.conftest import HEALTH, INGEST, RESULTS, assert_problem, wait_for

# An outage answer must come quickly: the connection is refused, or times out after DB_CONNECT_TIMEOUT.
QUICK = 3.0


def _reading(device, timestamps):
    return {"device_id": device, "timestamp": timestamps.take(1)[0], "metrics": {"temperature": 21.5}}


def _batch(device, timestamps, size=5):
    return [{"device_id": device, "timestamp": ts, "metrics": {"temperature": 20}} for ts in timestamps.take(size)]


@pytest.mark.time_limit(60)
def test_database_stopped_and_restarted(stack, start_web_server, timestamps):
    device = stack.devices[0]
    server = start_web_server(workers=1, threads=4)
    stack.cluster.ensure_running()
    token = server.token()
    auth = {"Authorization": f"Bearer {token}"}
    reads = [f"/api/v1/devices/{device}/telemetry/latest/", f"/api/v1/devices/{device}/", "/api/v1/events/"]

    # Every thread holds a persistent connection before the outage.
    for _ in range(8):
        assert server.request("POST", INGEST, body=_reading(device, timestamps)).status == 201
        for path in reads:
            assert server.request("GET", path, headers=auth).status == 200

    stack.cluster.stop()
    outage = {"requests": 0, "slowest_s": 0.0}
    for _ in range(3):
        answers = [
            server.request("POST", INGEST, body=_reading(device, timestamps)),
            server.request("POST", INGEST, body=_batch(device, timestamps)),
            *(server.request("GET", path, headers=auth) for path in reads),
        ]
        for response in answers:
            assert_problem(response, 503, "database_unavailable" if response.status == 503 else None)
            assert response.elapsed < QUICK, response.elapsed
        health = server.request("GET", HEALTH)
        assert assert_problem(health, 503, "unhealthy")["database"] == "unavailable"
        outage["requests"] += len(answers) + 1
        outage["slowest_s"] = round(max(outage["slowest_s"], health.elapsed, *(r.elapsed for r in answers)), 3)

    stack.cluster.start()
    restarted = time.monotonic()
    # No restart of the app server: the broken persistent connections are replaced on the next request.
    wait_for(lambda: server.request("GET", HEALTH).status == 200, timeout=15, message="health 200")
    outage["recovered_after_s"] = round(time.monotonic() - restarted, 3)
    for _ in range(8):
        assert server.request("POST", INGEST, body=_reading(device, timestamps)).status == 201
        assert server.request("POST", INGEST, body=_batch(device, timestamps)).status == 201
        for path in reads:
            assert server.request("GET", path, headers=auth).status == 200
    RESULTS["database stopped"] = outage


@pytest.mark.time_limit(60)
def test_frozen_database_times_out_after_db_connect_timeout(stack, start_web_server, timestamps):
    """A database that accepts TCP but never answers (here: the postmaster stopped with SIGSTOP) costs a new
    connection DB_CONNECT_TIMEOUT seconds, then a 503 — not a hang until the proxy gives up."""
    device = stack.devices[1]
    stack.cluster.ensure_running()
    # Without persistent connections every request opens one, as after an idle connection expired.
    server = start_web_server(workers=1, threads=2, DB_CONN_MAX_AGE="0", DB_CONNECT_TIMEOUT="2")
    assert server.request("POST", INGEST, body=_reading(device, timestamps)).status == 201
    stack.cluster.freeze()
    try:
        response = server.request("POST", INGEST, body=_reading(device, timestamps), timeout=20)
        assert_problem(response, 503, "database_unavailable")
        assert 1.5 < response.elapsed < 2 + QUICK, response.elapsed
        health = server.request("GET", HEALTH, timeout=20)
        assert assert_problem(health, 503, "unhealthy")["database"] == "unavailable"
        assert health.elapsed < 2 + QUICK
    finally:
        stack.cluster.thaw()
    wait_for(lambda: server.request("GET", HEALTH).status == 200, timeout=15, message="health 200")
    assert server.request("POST", INGEST, body=_reading(device, timestamps)).status == 201
    RESULTS["database frozen"] = {"connect_timeout_s": 2, "answered_503_after_s": round(response.elapsed, 3)}
