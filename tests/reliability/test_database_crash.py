"""PostgreSQL SIGKILLed (postmaster and every backend) in the middle of sustained concurrent ingest over HTTP:
after crash recovery every reading that got a 201 is in the table, and no batch is stored in part."""

import time

import pytest

from tests.reliability.conftest import RESULTS, wait_for
from tests.reliability.load import IngestLoad, check_against_table

CRASHES = 2


@pytest.mark.time_limit(90)
def test_acknowledged_readings_survive_a_postgres_crash(stack, start_web_server, timestamps):
    cluster = stack.cluster
    cluster.ensure_running()
    server = start_web_server(workers=2, threads=4)
    load = IngestLoad(server.port, stack.devices[10:16], timestamps, batch_size=50).start()
    killed = []
    try:
        for _ in range(CRASHES):
            before = load.acknowledged_readings()
            wait_for(
                lambda before=before: load.acknowledged_readings() > before + 1500,
                timeout=20,
                message="acknowledged ingest",
            )
            killed.append(cluster.kill())
            time.sleep(1)  # clients meet the outage
            log_size = cluster.log.stat().st_size
            cluster.start()
            with cluster.log.open() as log:
                log.seek(log_size)
                assert "automatic recovery in progress" in log.read()
            # The app server reconnects by itself and the clients are acknowledged again.
            after_restart = load.acknowledged_readings()
            wait_for(
                lambda after_restart=after_restart: load.acknowledged_readings() > after_restart + 500,
                timeout=20,
                message="recovery",
            )
    finally:
        load.stop()
    numbers = check_against_table(cluster, load)
    assert numbers["outcomes"].get("503"), "the crash was never observed by a client"
    RESULTS["postgres SIGKILL during ingest"] = {"crashes": len(killed), "processes_killed": sum(killed), **numbers}
