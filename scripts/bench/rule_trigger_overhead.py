"""Measures the telemetry_evaluate_rules trigger: the same batch inserts with the trigger vs with it ignored.

Run through rule-trigger-overhead.sh (a throwaway cluster) or against any migrated, empty database named by
DATABASE_URL. 100 devices of 5 types, 100 rules (40 device, 30 device-type, 30 global ones over 8 metrics, 2 of
which never appear), 200,000 readings of 6 metrics in batches of 1,000, each batch one INSERT … SELECT FROM
jsonb_array_elements(…) ON CONFLICT DO NOTHING and one COMMIT (the ingest path's statement). About 3 % of the
readings breach at least one rule. The two kinds alternate every 10 batches so the machine's load hits both
alike; each round starts from empty tables.
"""

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iothub.settings")

import django

django.setup()

import pgtrigger  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from rules.models import Event, Rule  # noqa: E402
from telemetry.models import Device, DeviceType  # noqa: E402

TRIGGER = "telemetry.Telemetry:telemetry_evaluate_rules"
DEVICES, READINGS, BATCH, BLOCK = 100, 200_000, 1_000, 10
INSERT = """
    INSERT INTO telemetry (device_id, time, metrics)
    SELECT (r ->> 'device_id')::uuid, (r ->> 'time')::timestamptz, r -> 'metrics'
    FROM jsonb_array_elements(%s::jsonb) r
    ON CONFLICT DO NOTHING
"""


def create_fleet():
    types = [DeviceType.objects.create(name=f"bench type {i}") for i in range(5)]
    devices = [
        Device.objects.create(name=f"bench {i}", serial_number=f"BENCH-{i:04d}", device_type=types[i % 5])
        for i in range(DEVICES)
    ]
    rules = []
    for i, device in enumerate(devices[:40]):
        rules.append(Rule(name=f"device {i}", device=device, metric="temperature", operator="gt", threshold=38 + i % 5))
    for t, device_type in enumerate(types):
        for metric, operator, threshold in [
            ("humidity", "gt", 90 + t),
            ("pressure", "lt", 960),
            ("battery", "lte", 5),
            ("temperature", "gte", 45),
            ("door_open", "eq", True),
            ("state", "eq", "fault"),
        ]:
            rules.append(
                Rule(
                    name=f"type {t} {metric}",
                    device_type=device_type,
                    metric=metric,
                    operator=operator,
                    threshold=threshold,
                )
            )
    for i in range(30):
        metric, operator, threshold = [
            ("temperature", "gt", 40 + i % 8),
            ("humidity", "gte", 92 + i % 6),
            ("pressure", "lt", 955 - i % 5),
            ("state", "neq", "ok") if i % 2 else ("state", "eq", "fault"),
            ("vibration", "gt", 3),  # a metric no reading has
            ("co2", "gt", 1000),  # neither
        ][i % 6]
        rules.append(Rule(name=f"global {i}", metric=metric, operator=operator, threshold=threshold))
    Rule.objects.bulk_create(rules)
    return devices


def make_batches(devices, start, seed=4):
    """READINGS readings from ``start``, 1 s apart per device, as JSON batch bodies; and the share that breaches."""
    rng = random.Random(seed)
    rows, breaching = [], 0
    for step in range(READINGS // DEVICES):
        moment = (start + timedelta(seconds=step)).isoformat()
        for device in devices:
            spike = rng.random() < 0.03
            kind = rng.randrange(6) if spike else -1
            breaching += spike
            rows.append(
                {
                    "device_id": str(device.pk),
                    "time": moment,
                    "metrics": {
                        "temperature": round(rng.uniform(48, 50) if kind == 0 else rng.uniform(15, 30), 2),
                        "humidity": round(rng.uniform(98, 99) if kind == 1 else rng.uniform(30, 70), 1),
                        "pressure": round(rng.uniform(900, 940) if kind == 2 else rng.uniform(990, 1030), 1),
                        "battery": rng.randint(0, 4) if kind == 3 else rng.randint(20, 100),
                        "door_open": kind == 4,
                        "state": "fault" if kind == 5 else "ok",
                    },
                }
            )
    batches = [json.dumps(rows[i : i + BATCH]) for i in range(0, len(rows), BATCH)]
    return batches, breaching / len(rows)


def insert(body, *, ignored):
    """Seconds to insert one batch in its own transaction."""
    began = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        if ignored:
            with pgtrigger.ignore(TRIGGER):
                cursor.execute(INSERT, [body])
        else:
            cursor.execute(INSERT, [body])
    return time.perf_counter() - began


def run(ignored_batches, trigger_batches):
    """Total seconds per kind. The kinds alternate every BLOCK batches, so load on the machine hits both alike;
    their readings lie a day apart, so each kind fills its own chunk."""
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE telemetry, events, notifications")
        cursor.execute("ANALYZE devices")
        cursor.execute("ANALYZE rules")
    totals = {True: 0.0, False: 0.0}
    for block in range(0, len(ignored_batches), BLOCK):
        for ignored, batches in ((True, ignored_batches), (False, trigger_batches)):
            for body in batches[block : block + BLOCK]:
                totals[ignored] += insert(body, ignored=ignored)
    return totals[True], totals[False]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each kind (default 3)")
    args = parser.parse_args()
    if Device.objects.exists() or Rule.objects.exists():
        sys.exit("The database must be empty: this script creates its own devices and rules.")

    devices = create_fleet()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    ignored_batches, breach_share = make_batches(devices, start)
    trigger_batches, _ = make_batches(devices, start + timedelta(days=1))
    ratios = []
    for round_ in range(1, args.rounds + 1):
        ignored, triggered = run(ignored_batches, trigger_batches)
        ratios.append(triggered / ignored)
        print(
            f"round {round_}: ignored {ignored:.2f} s ({READINGS / ignored:,.0f}/s), "
            f"trigger {triggered:.2f} s ({READINGS / triggered:,.0f}/s), ratio {ratios[-1]:.3f}"
        )
    events = Event.objects.count()
    occurrences = sum(Event.objects.values_list("occurrence_count", flat=True))
    print(
        f"{READINGS:,} readings per kind, {DEVICES} devices, {Rule.objects.count()} rules, batches of {BATCH:,}; "
        f"{breach_share:.1%} of readings breach; each round: {events} events, {occurrences} occurrences"
    )
    print(f"median ratio: {statistics.median(ratios):.3f} (goal <= 1.25)")


if __name__ == "__main__":
    main()
