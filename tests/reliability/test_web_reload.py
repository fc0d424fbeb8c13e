"""A graceful reload of the app server (SIGHUP, as after a deploy of new code) under sustained ingest: every
worker is replaced one after the other, every request is answered 201 (a device resending the rare request whose
connection an old worker closed before reading it), and every acknowledged reading is stored once."""

import os
import signal
from pathlib import Path

import pytest

from tests.reliability.conftest import RESULTS, wait_for
from tests.reliability.load import IngestLoad, check_against_table


@pytest.fixture
def queued_connections_migrate():
    """net.ipv4.tcp_migrate_req=1, as the web container sets it (docker-compose.yml), for this test's namespace:
    without it a connection waiting in an old worker's accept queue when the worker stops listening is reset (seen
    once in 2,299 requests). Restored afterwards."""
    setting = Path("/proc/sys/net/ipv4/tcp_migrate_req")
    if not setting.exists() or not os.access(setting, os.W_OK):
        pytest.skip("needs root and Linux 5.14+ (net.ipv4.tcp_migrate_req)")
    before = setting.read_text()
    setting.write_text("1")
    try:
        yield
    finally:
        setting.write_text(before)


@pytest.mark.time_limit(120)
@pytest.mark.usefixtures("queued_connections_migrate")
def test_a_reload_replaces_every_worker_and_loses_no_request(stack, start_web_server, timestamps):
    stack.cluster.ensure_running()
    server = start_web_server(workers=2, threads=2)
    # An old worker that stops may close a connection it accepted before reading its request (seen about once in
    # 2,300 requests): the client gets a connection error, no response, and resends, as devices do.
    load = IngestLoad(
        server.port, stack.devices[26:30], timestamps, batch_size=100, resend_after_connection_errors=True
    ).start()
    try:
        wait_for(lambda: load.acknowledged_readings() > 1000, timeout=20, message="acknowledged ingest")
        old = set(server.worker_pids())
        server.process.send_signal(signal.SIGHUP)
        wait_for(
            lambda: not old & set(server.worker_pids()) and len(server.worker_pids()) == server.workers,
            timeout=60,
            message="every worker replaced",
        )
        after = load.acknowledged_readings()
        wait_for(lambda: load.acknowledged_readings() > after + 1000, timeout=20, message="ingest after the reload")
    finally:
        load.stop()
    assert server.process.poll() is None, "the app server's main process died"
    numbers = check_against_table(stack.cluster, load)
    assert numbers["outcomes"] == {"201": numbers["requests"]}, numbers["outcomes"]
    resent = sum(load.resent.values())
    # The reload replaces two workers: a handful of connections at most, never a stream of failures.
    assert resent <= 4, load.resent
    RESULTS["app server reload (SIGHUP) during ingest"] = {
        "workers_replaced": len(old),
        "resent_after_connection_errors": dict(load.resent),
        **numbers,
    }
