"""An app server worker SIGKILLed in the middle of requests (a stream of batch posts keeps every worker busy): the
server starts a new worker and keeps serving, no batch is stored in part, and every acknowledged reading is
stored."""

import pytest

from tests.reliability.conftest import INGEST, RESULTS, wait_for
from tests.reliability.load import IngestLoad, check_against_table

KILLS = 3
# granian stops altogether when a worker it just replaced dies again within 5.5 s (a crash loop: the container's
# restart policy takes over then); a worker that has served longer is replaced, however often.
CRASH_LOOP_SECONDS = 5.5


@pytest.mark.time_limit(120)
def test_a_killed_worker_is_replaced_and_loses_nothing(stack, start_web_server, timestamps):
    stack.cluster.ensure_running()
    server = start_web_server(workers=2, threads=2)
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
            victim = wait_for(
                lambda: server.oldest_worker(older_than=CRASH_LOOP_SECONDS + 0.5), timeout=20, message="a worker"
            )
            server.kill_worker(victim)
            killed.append(victim)
            # Replaced means serving again: each granian worker listens on a socket of its own, opened once it
            # has loaded the app. Killing the only listening worker while its replacement still loads would leave
            # nothing listening: new connections would be refused (behind nginx, 502 problems).
            wait_for(
                lambda victim=victim: (
                    len(server.worker_pids()) == server.workers
                    and victim not in server.worker_pids()
                    and server.listening_sockets() == server.workers
                ),
                timeout=30,
                message="the server to replace the worker",
            )
        after = load.acknowledged_readings()
        wait_for(lambda: load.acknowledged_readings() > after + 2000, timeout=20, message="ingest after the kills")
    finally:
        load.stop()
    assert server.process.poll() is None, "the app server's main process died"
    numbers = check_against_table(stack.cluster, load)
    interrupted = sum(count for outcome, count in numbers["outcomes"].items() if outcome != "201")
    assert interrupted, "no request was in flight when a worker was killed"
    # Only requests the killed worker held or had queued: another worker was listening all along.
    assert "ConnectionRefusedError" not in numbers["outcomes"], numbers["outcomes"]
    reading = {"device_id": stack.devices[24], "timestamp": timestamps.take(1)[0], "metrics": {"t": 1}}
    assert server.request("POST", INGEST, body=reading).status == 201
    RESULTS["app server worker SIGKILL during ingest"] = {"workers_killed": len(killed), **numbers}
