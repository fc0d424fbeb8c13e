"""A gunicorn worker SIGKILLed in the middle of requests (a stream of batch posts keeps every worker busy): the
master starts a new worker and the server keeps serving, no batch is stored in part, and every acknowledged
reading is stored."""

import pytest

from tests.reliability.conftest import INGEST, RESULTS, wait_for
from tests.reliability.load import IngestLoad, check_against_table

KILLS = 3


@pytest.mark.time_limit(90)
def test_a_killed_worker_is_replaced_and_loses_nothing(stack, start_gunicorn, timestamps):
    stack.cluster.ensure_running()
    server = start_gunicorn(workers=2, threads=2)
    # Four clients on four worker threads, batches of 500: a worker is nearly always inside a request.
    load = IngestLoad(server.port, stack.devices[20:24], timestamps, batch_size=500).start()
    killed = []
    try:
        for _ in range(KILLS):
            before = load.acknowledged_readings()
            wait_for(
                lambda before=before: load.acknowledged_readings() > before + 2000,
                timeout=20,
                message="acknowledged ingest",
            )
            victim = server.worker_pids()[0]
            server.kill_worker(victim)
            killed.append(victim)
            wait_for(
                lambda victim=victim: (
                    len(server.worker_pids()) == server.workers and victim not in server.worker_pids()
                ),
                timeout=20,
                message="the master to replace the worker",
            )
        after = load.acknowledged_readings()
        wait_for(lambda: load.acknowledged_readings() > after + 2000, timeout=20, message="ingest after the kills")
    finally:
        load.stop()
    assert server.process.poll() is None, "the gunicorn master died"
    numbers = check_against_table(stack.cluster, load)
    interrupted = sum(count for outcome, count in numbers["outcomes"].items() if outcome != "201")
    assert interrupted, "no request was in flight when a worker was killed"
    reading = {"device_id": stack.devices[24], "timestamp": timestamps.take(1)[0], "metrics": {"t": 1}}
    assert server.request("POST", INGEST, body=reading).status == 201
    RESULTS["gunicorn worker SIGKILL during ingest"] = {"workers_killed": len(killed), **numbers}
