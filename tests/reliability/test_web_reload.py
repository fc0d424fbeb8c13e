"""A graceful reload of the app server (SIGHUP, as after a deploy of new code) under sustained ingest: every
worker is replaced one after the other, no request fails, and every acknowledged reading is stored."""

import signal

import pytest

from tests.reliability.conftest import RESULTS, wait_for
from tests.reliability.load import IngestLoad, check_against_table


@pytest.mark.time_limit(120)
def test_a_reload_replaces_every_worker_without_failing_a_request(stack, start_web_server, timestamps):
    stack.cluster.ensure_running()
    server = start_web_server(workers=2, threads=2)
    load = IngestLoad(server.port, stack.devices[26:30], timestamps, batch_size=100).start()
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
    RESULTS["app server reload (SIGHUP) during ingest"] = {"workers_replaced": len(old), **numbers}
