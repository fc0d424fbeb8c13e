"""Measures the telemetry_evaluate_rules trigger: the same batch inserts with the trigger vs with it ignored.

Run through rule-trigger-overhead.sh (a throwaway cluster) or against any migrated, empty database named by
DATABASE_URL. 100 devices of 5 types and 100 rules (40 device, 30 device-type, 30 global ones over 8 metrics, 2 of
which never appear), of which 0, 10 or 100 are enabled (the 10 are every tenth rule, so all three kinds of target
are represented); 100,000 readings of 6 metrics in batches of 1,000, each batch one INSERT … SELECT FROM
jsonb_array_elements(…) ON CONFLICT DO NOTHING and one COMMIT (the ingest path's statement). By default 1 % of the
readings breach at least one of the 100 rules (--breach). Within a round the trigger and ignored kinds alternate
batch by batch, so load from anything else on the machine hits both alike; each rule count starts from empty
tables, and the rule counts follow each other back to back. A round's ratio is total time with the trigger over
total time with it ignored (wall clock, as a client sees it); the figure per rule count is the median of the
rounds' ratios, with their spread. When the database runs on this machine, the same ratio is also given for the
CPU time of the server process alone (/proc/<pid>/schedstat), which shared-machine noise disturbs less.
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
DEVICES, BATCH, BLOCK = 100, 1_000, 1
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


def enable(count):
    """Enables ``count`` rules (0, all, or every len/count-th one by id) and disables the others."""
    ids = list(Rule.objects.order_by("id").values_list("id", flat=True))
    chosen = set(ids[:: len(ids) // count]) if count else set()
    Rule.objects.update(enabled=False)
    Rule.objects.filter(id__in=chosen).update(enabled=True)
    return len(chosen)


def make_batches(devices, start, readings, breach, seed=4):
    """``readings`` readings from ``start``, 1 s apart per device, as JSON batch bodies; and the share that breaches
    (at least one of the 100 rules)."""
    rng = random.Random(seed)
    rows, breaching = [], 0
    for step in range(readings // DEVICES):
        moment = (start + timedelta(seconds=step)).isoformat()
        for device in devices:
            spike = rng.random() < breach
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


def server_cpu_reader():
    """A function returning the CPU seconds used so far by this connection's server process, or None when the
    server runs elsewhere (its /proc entry is not readable here)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        path = f"/proc/{cursor.fetchone()[0]}/schedstat"

    def read():
        with open(path) as stat:
            return int(stat.read().split()[0]) / 1e9

    try:
        read()
    except OSError:
        return None
    return read


def insert(body, *, ignored, cpu=None):
    """(wall seconds, server CPU seconds or None) to insert one batch in its own transaction; ``cpu`` reads the
    server process's CPU time (server_cpu_reader())."""
    began, began_cpu = time.perf_counter(), cpu() if cpu else None
    with transaction.atomic(), connection.cursor() as cursor:
        if ignored:
            with pgtrigger.ignore(TRIGGER):
                cursor.execute(INSERT, [body])
        else:
            cursor.execute(INSERT, [body])
    wall = time.perf_counter() - began
    return wall, (cpu() - began_cpu) if began_cpu is not None else None


def run(ignored_batches, trigger_batches):
    """Total (wall, server CPU) seconds per kind. The kinds alternate every BLOCK batches, so load on the machine
    hits both alike; their readings lie a day apart, so each kind fills its own chunk."""
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE telemetry, events, notifications")
        cursor.execute("ANALYZE devices")
        cursor.execute("ANALYZE rules")
    cpu_reader = server_cpu_reader()
    wall = {True: 0.0, False: 0.0}
    cpu = {True: 0.0, False: 0.0}
    for block in range(0, len(ignored_batches), BLOCK):
        for ignored, batches in ((True, ignored_batches), (False, trigger_batches)):
            for body in batches[block : block + BLOCK]:
                seconds, cpu_seconds = insert(body, ignored=ignored, cpu=cpu_reader)
                wall[ignored] += seconds
                cpu[ignored] += cpu_seconds or 0.0
    return wall[True], wall[False], (cpu[False] / cpu[True] if cpu[True] else None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each measures every rule count (default 5)")
    parser.add_argument("--rules", default="0,10,100", help="enabled rule counts, comma-separated (default 0,10,100)")
    parser.add_argument("--breach", type=float, default=0.01, help="share of breaching readings (default 0.01)")
    parser.add_argument("--readings", type=int, default=100_000, help="readings per kind and round (default 100,000)")
    args = parser.parse_args()
    counts = [int(count) for count in args.rules.split(",")]
    if Device.objects.exists() or Rule.objects.exists():
        sys.exit("The database must be empty: this script creates its own devices and rules.")

    devices = create_fleet()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    ignored_batches, breach_share = make_batches(devices, start, args.readings, args.breach)
    trigger_batches, _ = make_batches(devices, start + timedelta(days=1), args.readings, args.breach)
    print(
        f"{args.readings:,} readings per kind and round, {DEVICES} devices, batches of {BATCH:,}; "
        f"{breach_share:.2%} of readings breach (with all 100 rules enabled)"
    )
    ratios = {count: [] for count in counts}
    cpu_ratios = {count: [] for count in counts}
    for round_ in range(1, args.rounds + 1):
        for count in counts:
            enabled = enable(count)
            ignored, triggered, cpu_ratio = run(ignored_batches, trigger_batches)
            ratios[count].append(triggered / ignored)
            if cpu_ratio is not None:
                cpu_ratios[count].append(cpu_ratio)
            events = Event.objects.count()
            occurrences = sum(Event.objects.values_list("occurrence_count", flat=True))
            print(
                f"round {round_}, {enabled:3d} rules: ignored {ignored:.2f} s ({args.readings / ignored:,.0f}/s), "
                f"trigger {triggered:.2f} s ({args.readings / triggered:,.0f}/s), ratio {ratios[count][-1]:.3f}"
                + (f" (server CPU {cpu_ratio:.3f})" if cpu_ratio is not None else "")
                + f"; {events} events, {occurrences} occurrences",
                flush=True,
            )
    for count in counts:
        values, cpu_values = sorted(ratios[count]), sorted(cpu_ratios[count])
        print(
            f"{count:3d} rules: median ratio {statistics.median(values):.3f} "
            f"(min {values[0]:.3f}, max {values[-1]:.3f}, {len(values)} rounds)"
            + (
                f"; server CPU {statistics.median(cpu_values):.3f} ({cpu_values[0]:.3f}-{cpu_values[-1]:.3f})"
                if cpu_values
                else ""
            )
            + ("; goal <= 1.25" * (count == 100))
        )


if __name__ == "__main__":
    main()
