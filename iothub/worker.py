"""The project's one background worker: periodic and NOTIFY-driven tasks that the apps register.

An app declares its tasks in ``<app>/tasks.py``; ``manage.py run_worker`` imports every app's ``tasks`` module and
runs them all in one process::

    from datetime import timedelta

    from iothub.worker import on_notify, periodic

    @on_notify("notifications_pending")
    def deliver_pending_notifications():
        ...  # claims and delivers whatever is pending, however many NOTIFYs announced it

    @periodic("enforce_retention", every=timedelta(days=1), run_at_start=True)
    def enforce_retention():
        ...

Tasks take no arguments. One task runs at a time, so a task never overlaps itself.
"""

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg2
from django.db import close_old_connections, connection, connections
from psycopg2 import sql

logger = logging.getLogger(__name__)

# The LISTEN connection is retried after 1 s, 2 s, 4 s, … at most this long apart.
MAX_RECONNECT_DELAY = 30.0
# Errors that mean the LISTEN connection is gone (database restart, network, pg_terminate_backend).
CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)

Task = Callable[[], object]


@dataclass(frozen=True, kw_only=True)
class PeriodicTask:
    name: str
    func: Task
    every: timedelta
    run_at_start: bool


@dataclass
class Registry:
    """Tasks by name and NOTIFY listeners by channel. The module-level ``registry`` is the project's; tests build
    their own and hand it to ``Worker``."""

    periodic_tasks: dict[str, PeriodicTask] = field(default_factory=dict)
    listeners: dict[str, Task] = field(default_factory=dict)

    def periodic(self, name, *, every, run_at_start=False):
        """Run the decorated function every ``every``, and as soon as the worker starts if ``run_at_start``
        (otherwise first after one interval; a restart begins the interval again)."""
        if every <= timedelta(0):
            raise ValueError(f"Periodic task {name!r}: 'every' must be positive, not {every}.")

        def register(func):
            if name in self.periodic_tasks:
                raise ValueError(f"A periodic task named {name!r} is already registered.")
            self.periodic_tasks[name] = PeriodicTask(name=name, func=func, every=every, run_at_start=run_at_start)
            return func

        return register

    def on_notify(self, channel):
        """Run the decorated function when ``NOTIFY <channel>`` arrives.

        The listener must be an idempotent "process whatever is pending" function, not a handler of one message:
        payloads are not passed, a burst of NOTIFYs is coalesced into one call, and the listener is also called
        when the worker starts, after the LISTEN connection is re-established and on every poll interval, so work
        announced by a NOTIFY that was missed (worker down, connection lost) is still done.
        """

        def register(func):
            if channel in self.listeners:
                raise ValueError(f"A listener for channel {channel!r} is already registered.")
            self.listeners[channel] = func
            return func

        return register


registry = Registry()
periodic = registry.periodic
on_notify = registry.on_notify


class Worker:
    """Runs a registry's tasks until ``stop()``: listeners on NOTIFY, periodic tasks when due.

    ``poll_interval`` (seconds) bounds every wait: listeners run at least that often, and the LISTEN connection is
    checked that often even when no notification arrives.
    """

    def __init__(self, registry=registry, *, poll_interval=30.0):
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, not {poll_interval}.")
        self.registry = registry
        self.poll_interval = poll_interval
        # The backend pid of the LISTEN connection, for operators (pg_stat_activity) and tests.
        self.listen_backend_pid = None
        self._stopping = threading.Event()
        # Self-pipe: stop() (from another thread or a signal handler) wakes the select() at once.
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._listen = None
        self._due = {}
        self._next_poll = 0.0

    def stop(self):
        """Ask the loop to return after the task in progress. Safe from any thread and from signal handlers."""
        self._stopping.set()
        # OSError: the pipe is full (a wake-up is pending anyway) or the worker has already finished.
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def run(self):
        logger.info(
            "Worker running %d periodic task(s) and %d listener(s); polling every %s s",
            len(self.registry.periodic_tasks),
            len(self.registry.listeners),
            self.poll_interval,
        )
        now = time.monotonic()
        self._due = {
            task.name: now if task.run_at_start else now + task.every.total_seconds()
            for task in self.registry.periodic_tasks.values()
        }
        delay = 1.0
        try:
            while not self._stopping.is_set():
                try:
                    self._open_listen_connection()
                    delay = 1.0
                    # Listeners run at once: whatever was announced while we were not listening is pending.
                    self._next_poll = time.monotonic()
                    self._serve()
                except CONNECTION_ERRORS as error:
                    logger.warning(
                        "The LISTEN connection failed (%s); reconnecting in %s s", " ".join(str(error).split()), delay
                    )
                    self._close_listen_connection()
                    self._wait(delay)
                    delay = min(delay * 2, MAX_RECONNECT_DELAY)
        finally:
            self._close_listen_connection()
            connections.close_all()
            self._wake_reader.close()
            self._wake_writer.close()
            logger.info("Worker stopped")

    def _open_listen_connection(self):
        """A dedicated autocommit connection, outside Django's, because a LISTEN lasts as long as its session."""
        if not self.registry.listeners:
            return
        self._listen = connection.get_new_connection(connection.get_connection_params())
        self._listen.autocommit = True
        with self._listen.cursor() as cursor:
            for channel in self.registry.listeners:
                cursor.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self.listen_backend_pid = self._listen.info.backend_pid
        logger.info("Listening on %s", ", ".join(self.registry.listeners))

    def _close_listen_connection(self):
        if self._listen is not None:
            self._listen.close()
            self._listen = None
            self.listen_backend_pid = None

    def _serve(self):
        """The loop for one LISTEN connection; raises CONNECTION_ERRORS when it breaks."""
        while not self._stopping.is_set():
            now = time.monotonic()
            polling = now >= self._next_poll
            if polling and self._listen is not None:
                # A dead peer that never closed the socket shows up only when we talk to it.
                with self._listen.cursor() as cursor:
                    cursor.execute("SELECT 1")
            notified = self._take_notifications()
            if polling:
                channels = list(self.registry.listeners)
                self._next_poll = now + self.poll_interval
            else:
                channels = [channel for channel in self.registry.listeners if channel in notified]
            for channel in channels:
                if self._stopping.is_set():
                    return
                self._run_task(f"listener for {channel}", self.registry.listeners[channel])
            for name, due in list(self._due.items()):
                if self._stopping.is_set():
                    return
                if due <= time.monotonic():
                    task = self.registry.periodic_tasks[name]
                    self._due[name] = time.monotonic() + task.every.total_seconds()
                    self._run_task(name, task.func)
            self._wait(min([self._next_poll, *self._due.values()]) - time.monotonic())

    def _take_notifications(self):
        """The channels notified since the last call; reading them all at once is what coalesces a burst."""
        if self._listen is None:
            return set()
        self._listen.poll()
        channels = {notify.channel for notify in self._listen.notifies}
        self._listen.notifies.clear()
        return channels

    def _wait(self, timeout):
        """Sleep until the timeout, a notification or stop(), whichever comes first."""
        waiting_on = [self._wake_reader] if self._listen is None else [self._wake_reader, self._listen]
        ready, _, _ = select.select(waiting_on, [], [], max(timeout, 0))
        if self._wake_reader in ready:
            while True:
                try:
                    if not self._wake_reader.recv(4096):
                        break
                except BlockingIOError:
                    break

    def _run_task(self, name, func):
        """Run one task; its failure is logged and never stops the worker."""
        # Drops a Django connection that broke or outlived CONN_MAX_AGE, as Django does around a request.
        close_old_connections()
        started = time.monotonic()
        try:
            func()
        except Exception:
            logger.exception("Task %s failed", name)
        else:
            logger.debug("Task %s done in %.3f s", name, time.monotonic() - started)
        finally:
            close_old_connections()
