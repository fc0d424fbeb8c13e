"""The background worker against the real database: NOTIFY wake-ups, periodic tasks, reconnection, shutdown."""

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from iothub.worker import Registry, Worker

ROOT = Path(__file__).resolve().parents[2]
# Far longer than any wait below: a listener called sooner was woken by NOTIFY, not by the poll.
LONG_POLL = 60


def _wait_until(predicate, *, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _notify(channel):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, '')", [channel])


class Calls:
    """A task that records when it ran."""

    def __init__(self):
        self.times = []

    def __call__(self):
        self.times.append(time.monotonic())

    def __len__(self):
        return len(self.times)


@pytest.fixture
def start_worker():
    """Runs workers in threads and always stops them, so a failing test leaves no loop or connection behind."""
    running = []

    def start(registry, *, poll_interval=LONG_POLL):
        worker = Worker(registry, poll_interval=poll_interval)
        thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
        thread.start()
        running.append((worker, thread))
        return worker

    yield start
    for worker, thread in running:
        worker.stop()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the worker did not stop within 10 s"


def test_registering_a_name_or_channel_twice_raises():
    registry = Registry()
    registry.periodic("cleanup", every=timedelta(minutes=1))(Calls())
    registry.on_notify("work_pending")(Calls())

    with pytest.raises(ValueError, match="cleanup"):
        registry.periodic("cleanup", every=timedelta(hours=1))(Calls())
    with pytest.raises(ValueError, match="work_pending"):
        registry.on_notify("work_pending")(Calls())
    with pytest.raises(ValueError, match="positive"):
        registry.periodic("never", every=timedelta(0))


@pytest.mark.django_db(transaction=True)
def test_notify_wakes_the_listener_without_waiting_for_the_poll(start_worker):
    registry = Registry()
    listener = registry.on_notify("worker_test_wakeup")(Calls())
    start_worker(registry)
    assert _wait_until(lambda: len(listener) == 1), "listeners run once at start"

    sent = time.monotonic()
    _notify("worker_test_wakeup")

    assert _wait_until(lambda: len(listener) == 2)
    assert listener.times[1] - sent < 5 < LONG_POLL


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_notifies_is_coalesced(start_worker):
    registry = Registry()
    calls = []
    busy = threading.Event()
    release = threading.Event()

    @registry.on_notify("worker_test_burst")
    def listener():
        calls.append(time.monotonic())
        if len(calls) == 2:  # the first NOTIFY's run: hold it while the rest of the burst arrives
            busy.set()
            release.wait(timeout=10)

    start_worker(registry)
    assert _wait_until(lambda: len(calls) == 1)
    _notify("worker_test_burst")
    assert busy.wait(timeout=5)
    for _ in range(9):
        _notify("worker_test_burst")  # each in its own transaction: PostgreSQL does not merge them
    last_sent = time.monotonic()
    time.sleep(0.5)  # let PostgreSQL deliver them all to the worker's socket
    release.set()

    assert _wait_until(lambda: len(calls) >= 3)
    time.sleep(0.5)
    notifies_after_start = len(calls) - 1
    assert notifies_after_start < 10
    assert calls[-1] >= last_sent


@pytest.mark.django_db(transaction=True)
def test_periodic_tasks_run_on_schedule_and_a_failure_does_not_stop_the_loop(start_worker, caplog):
    registry = Registry()
    eager = registry.periodic("eager", every=timedelta(minutes=1), run_at_start=True)(Calls())
    lazy = registry.periodic("lazy", every=timedelta(minutes=1))(Calls())
    tick = registry.periodic("tick", every=timedelta(seconds=0.2))(Calls())
    failures = Calls()

    @registry.periodic("boom", every=timedelta(seconds=0.2), run_at_start=True)
    def boom():
        failures()
        raise RuntimeError("task exploded")

    caplog.set_level(logging.ERROR, logger="iothub.worker")
    start_worker(registry)

    assert _wait_until(lambda: len(tick) >= 3 and len(failures) >= 3)
    assert len(eager) == 1
    assert len(lazy) == 0
    assert tick.times[1] - tick.times[0] >= 0.15
    failed = [record for record in caplog.records if record.getMessage() == "Task boom failed"]
    assert len(failed) >= 3
    assert "task exploded" in caplog.text  # with its traceback


@pytest.mark.django_db(transaction=True)
def test_a_broken_django_connection_is_replaced_between_runs(start_worker):
    registry = Registry()
    pids = []

    @registry.periodic("self_terminating", every=timedelta(seconds=0.2), run_at_start=True)
    def self_terminating():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pids.append(cursor.fetchone()[0])
            if len(pids) == 1:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    start_worker(registry)

    assert _wait_until(lambda: len(pids) >= 2)
    assert pids[1] != pids[0]


@pytest.mark.django_db(transaction=True)
def test_the_listen_connection_recovers_after_being_terminated(start_worker, caplog):
    registry = Registry()
    listener = registry.on_notify("worker_test_recovery")(Calls())
    worker = start_worker(registry)
    assert _wait_until(lambda: len(listener) == 1)
    first_pid = worker.listen_backend_pid

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [first_pid])
        assert cursor.fetchone()[0]

    # Reconnected after the 1 s back-off, with the listeners run once for anything missed meanwhile.
    assert _wait_until(lambda: worker.listen_backend_pid not in (None, first_pid) and len(listener) == 2, timeout=15)
    assert "The LISTEN connection failed" in caplog.text

    sent = time.monotonic()
    _notify("worker_test_recovery")
    assert _wait_until(lambda: len(listener) == 3)
    assert listener.times[2] - sent < 5 < LONG_POLL


def _test_database_url():
    db = connection.settings_dict
    credentials = quote(db["USER"], safe="") + (":" + quote(db["PASSWORD"], safe="") if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST']}:{db['PORT']}/{quote(db['NAME'], safe='')}"


def _read_until(stream, text, *, timeout):
    """What the stream printed until ``text`` appeared, or until the timeout or its end."""
    output = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in output and time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], max(deadline - time.monotonic(), 0))
        chunk = os.read(stream.fileno(), 4096) if ready else b""
        if ready and not chunk:
            break
        output += chunk
    return output.decode()


@pytest.mark.django_db
def test_run_worker_command_exits_cleanly_on_sigterm():
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_worker", "--poll-interval", str(LONG_POLL)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": _test_database_url()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        started = _read_until(process.stderr, "Worker running", timeout=60)
        assert "Worker running" in started, started

        signal_sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
        process.wait(timeout=10)

    assert process.returncode == 0, stderr
    assert time.monotonic() - signal_sent < 10 < LONG_POLL
    assert "Worker stopped." in stdout.decode()
