"""The notification worker (`manage.py run_worker`) SIGKILLed in the middle of a webhook delivery: after a restart
nothing stays `sending`, nothing is lost, every delivery the receiver saw is counted in `attempts`, and delivery is
at least once. The webhook goes to a slow local receiver on 127.0.0.1."""

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.reliability.conftest import RESULTS, manage, wait_for

NOTIFICATIONS = 8
DELIVERY_SECONDS = 0.4
STALLED_AFTER = 2

SETUP = """
from rules.models import NotificationChannel, Rule
channel = NotificationChannel.objects.create(name="reliability webhook", kind="webhook", target=%r)
rule = Rule.objects.create(
    name="reliability overheat", device_id=%r, metric="temperature", operator="gt", threshold=30, dedupe=False
)
rule.channels.add(channel)
print(channel.pk)
"""


class SlowReceiver:
    """Records each notification id when its request arrives and when it has been answered."""

    def __init__(self):
        self.arrived, self.answered = [], []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.arrived.append(body["notification_id"])
                time.sleep(DELIVERY_SECONDS)
                try:
                    self.send_response(204)
                    self.end_headers()
                except OSError:
                    return  # the worker is gone
                receiver.answered.append(body["notification_id"])

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = SlowReceiver()
    yield server
    server.close()


@pytest.mark.time_limit(90)
def test_a_killed_worker_loses_no_notification(stack, processes, receiver, tmp_path):
    cluster = stack.cluster
    cluster.ensure_running()
    device = stack.devices[30]
    channel = int(manage(cluster, "shell", "-c", SETUP % (receiver.url, device)).strip().splitlines()[-1])
    cluster.query(
        """
        INSERT INTO telemetry (device_id, time, metrics)
        SELECT %s, now() - make_interval(secs => n), jsonb_build_object('temperature', 40 + n)
        FROM generate_series(1, %s) AS n
        """,
        [device, NOTIFICATIONS],
    )

    def rows():
        return cluster.query("SELECT id, status, attempts FROM notifications WHERE channel_id = %s", [channel])

    assert len(rows()) == NOTIFICATIONS
    environment = stack.environment(
        NOTIFICATION_WEBHOOKS_ENABLED="1", NOTIFICATION_STALLED_AFTER=str(STALLED_AFTER), WORKER_POLL_INTERVAL="1"
    )
    command = [sys.executable, "manage.py", "run_worker"]

    worker = processes.start(command, env=environment, log=tmp_path / "worker-1.log")
    # Killed while the receiver holds a request: some delivered, one in flight, the rest of the batch claimed.
    wait_for(
        lambda: len(receiver.arrived) >= 3 and len(receiver.arrived) > len(receiver.answered),
        timeout=30,
        interval=0.02,
        message="a delivery in flight",
    )
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    killed_at = time.monotonic()
    in_flight = receiver.arrived[-1]
    left_sending = [row[0] for row in rows() if row[1] == "sending"]
    assert in_flight in left_sending

    # The restarted worker recovers claims older than NOTIFICATION_STALLED_AFTER at start.
    time.sleep(max(0.0, STALLED_AFTER + 0.5 - (time.monotonic() - killed_at)))
    processes.start(command, env=environment, log=tmp_path / "worker-2.log")
    wait_for(
        lambda: all(status == "sent" for _, status, _ in rows()),
        timeout=30,
        message="every notification sent",
    )

    received = Counter(receiver.arrived)
    attempts = {pk: count for pk, _, count in rows()}
    assert set(received) == set(attempts), "a notification was never delivered"
    for pk, count in attempts.items():
        # Every delivery the receiver saw is an attempt on record; a claim interrupted before its request counts too.
        assert received[pk] <= count <= received[pk] + 1, (pk, received[pk], count)
    assert received[in_flight] == 2, "the delivery in flight is repeated (at least once)"
    assert all(attempts[pk] == 2 for pk in left_sending)
    RESULTS["notification worker SIGKILL mid-delivery"] = {
        "notifications": NOTIFICATIONS,
        "left_sending_by_the_kill": len(left_sending),
        "lost": 0,
        "delivered_twice": sum(1 for count in received.values() if count > 1),
        "requests_received": sum(received.values()),
    }
