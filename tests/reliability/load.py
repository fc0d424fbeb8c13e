"""Sustained concurrent ingest over HTTP, with a client-side log of what was acknowledged, and the check of that
log against the table."""

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.reliability.conftest import INGEST, PROXIED

# A request's connection failed before any response: the server may not have read it whole (nothing stored: the
# INSERT runs only on a whole body), or may have committed it and died before answering (then a resend is a
# duplicate, stored once).
CONNECTION_ERRORS = {"BrokenPipeError", "ConnectionResetError", "RemoteDisconnected"}


@dataclass
class Sent:
    """One request's readings: its marker, and ``(device_id, epoch milliseconds)`` per reading number."""

    marker: str
    readings: list
    acknowledged: bool = False


@dataclass
class IngestLoad:
    """``clients`` threads, each with a device of its own, posting batches of ``batch_size`` readings and, every
    third request, a single reading, until stopped. Every reading's metrics carry its request's marker and its
    number in the request, so the table tells which request stored it."""

    port: int
    devices: list
    timestamps: object
    batch_size: int = 50
    timeout: float = 15.0
    # Resend a request once, as a device does, when its connection failed before any response came back (the same
    # readings: ingest stores a resent reading once). Each such failure is counted in ``resent``.
    resend_after_connection_errors: bool = False
    sent: list = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    resent: Counter = field(default_factory=Counter)

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(number, device), daemon=True)
            for number, device in enumerate(self.devices)
        ]

    def start(self):
        for thread in self._threads:
            thread.start()
        return self

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
            assert not thread.is_alive(), "an ingest client did not finish"

    def acknowledged_readings(self):
        with self._lock:
            return sum(len(sent.readings) for sent in self.sent if sent.acknowledged)

    def _client(self, number, device):
        sequence = 0
        while not self._stop.is_set():
            sequence += 1
            size = 1 if sequence % 3 == 0 else self.batch_size
            marker = f"c{number}-{sequence}"
            stamps = self.timestamps.take(size)
            body = [
                {"device_id": device, "timestamp": stamp, "metrics": {"batch": marker, "n": n, "temperature": 20}}
                for n, stamp in enumerate(stamps)
            ]
            sent = Sent(marker, [(device, self.timestamps.milliseconds(stamp)) for stamp in stamps])
            with self._lock:
                self.sent.append(sent)
            outcome = self._post(body[0] if size == 1 else body)
            if self.resend_after_connection_errors and outcome in CONNECTION_ERRORS:
                with self._lock:
                    self.resent[outcome] += 1
                outcome = self._post(body[0] if size == 1 else body)
            with self._lock:
                self.outcomes[outcome] += 1
                sent.acknowledged = outcome == 201
            if outcome != 201:
                time.sleep(0.05)  # don't spin on a server that is down

    def _post(self, body):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request("POST", INGEST, body=json.dumps(body), headers={**PROXIED, "Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException) as error:
            return type(error).__name__
        finally:
            conn.close()


def check_against_table(cluster, load):
    """Compares the client's log with the table: every acknowledged reading stored as sent, and every request
    stored whole or not at all. Returns the numbers."""
    rows = cluster.query(
        """
        SELECT metrics->>'batch', (metrics->>'n')::int, device_id::text,
               (extract(epoch FROM time) * 1000)::bigint
        FROM telemetry WHERE device_id = ANY(%s::uuid[])
        """,
        [load.devices],
    )
    stored = {}
    for marker, n, device, milliseconds in rows:
        stored.setdefault(marker, {})[n] = (device, milliseconds)
    by_marker = {sent.marker: sent for sent in load.sent}

    assert not set(stored) - set(by_marker), "rows no client sent"
    lost, partial, mismatched, stored_unacknowledged = [], [], [], 0
    for marker, sent in by_marker.items():
        readings = stored.get(marker, {})
        if readings and len(readings) != len(sent.readings):
            partial.append((marker, len(readings), len(sent.readings)))
        if sent.acknowledged and len(readings) < len(sent.readings):
            lost.append(marker)
        if readings and not sent.acknowledged:
            stored_unacknowledged += 1
        mismatched += [(marker, n) for n, reading in readings.items() if sent.readings[n] != reading]

    acknowledged = [sent for sent in load.sent if sent.acknowledged]
    numbers = {
        "requests": len(load.sent),
        "outcomes": {str(outcome): count for outcome, count in sorted(load.outcomes.items(), key=str)},
        "acknowledged_requests": len(acknowledged),
        "acknowledged_readings": sum(len(sent.readings) for sent in acknowledged),
        "readings_lost": sum(len(sent.readings) for sent in acknowledged if sent.marker in lost),
        "partial_requests": len(partial),
        "stored_without_acknowledgement": stored_unacknowledged,
    }
    assert not lost, f"acknowledged readings missing: {lost[:10]}"
    assert not partial, f"requests stored in part (marker, stored, sent): {partial[:10]}"
    assert not mismatched, f"readings stored with another device or time: {mismatched[:10]}"
    return numbers
