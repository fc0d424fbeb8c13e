"""What the benchmarks load: the fleet, the rules, readings identical to load.lua's, and the query dataset.

Needs Django set up on the stack's database (bench.__main__ does it).
"""

import threading
from datetime import UTC, datetime, timedelta

import orjson
import pgtrigger
import psycopg2
from django.db import connection

from rules.models import Rule
from telemetry.models import Device, DeviceType, Telemetry

TRIGGER = "telemetry.Telemetry:telemetry_evaluate_rules"
MERGED_TRIGGER = "telemetry.Telemetry:telemetry_evaluate_merged_rules"  # its UPDATE twin, fired by every batch
BREACH_EVERY = 100  # load.lua's BENCH_BREACH_EVERY: 1 % of the readings breach the ingest rule
INGEST_RULE = "bench: temperature above 100"
DATASET_RULE = "bench dataset: pressure spike"
DEVICE_TYPES = 5


def create_fleet(devices=100):
    """The ingest fleet (``devices`` active devices over 5 types) and the rule its readings breach 1 % of the
    time; returns the device ids as text, in load.lua's order."""
    types = [DeviceType.objects.create(name=f"bench type {i}") for i in range(DEVICE_TYPES)]
    fleet = Device.objects.bulk_create(
        Device(name=f"bench {i}", serial_number=f"BENCH-{i:04d}", device_type=types[i % DEVICE_TYPES])
        for i in range(devices)
    )
    Rule.objects.create(name=INGEST_RULE, metric="temperature", operator="gt", threshold=100)
    # bulk_create does not read back ids the database generates (the id is a database default).
    ids = dict(Device.objects.filter(serial_number__startswith="BENCH-").values_list("serial_number", "id"))
    return [str(ids[device.serial_number]) for device in fleet]


def ingest_rule():
    return Rule.objects.get(name=INGEST_RULE)


def reading(devices, base, n):
    """Reading number ``n`` exactly as load.lua builds it (device, timestamp base + n µs, metrics)."""
    temperature = 150 if n % BREACH_EVERY == 0 else round(15 + (n % 2000) / 100, 2)
    return {
        "device_id": devices[n % len(devices)],
        "time": base + timedelta(microseconds=n),
        "metrics": {"temperature": temperature, "humidity": 30 + (n % 500) / 10, "pressure": 990 + (n % 400) / 10},
    }


def batch_bodies(devices, base, *, readings, batch):
    """The parameter of telemetry.ingest.services' INSERT for consecutive batches of readings from ``base``: the
    JSON reading_ingest builds (orjson, the same keys)."""
    return [
        orjson.dumps([reading(devices, base, n) for n in range(first, min(first + batch, readings))]).decode()
        for first in range(0, readings, batch)
    ]


def ignore_setting():
    """The ``pgtrigger.ignore`` value that ``pgtrigger.ignore(TRIGGER)`` sets, for plain psycopg2 connections."""
    ((model, trigger),) = pgtrigger.registered(TRIGGER)
    pgid = trigger.get_pgid(model)
    return "{" + f"{model._meta.db_table}:{pgid},{pgid}" + "}"


# Rules by i % 10: (scope, metric, operator, threshold). Only kind 0 fires (on the 1 % of readings with temperature
# 150); the others watch thresholds the readings stay inside (temperature 15-35, humidity 30-80, pressure 990-1030).
_TRIGGER_RULE_KINDS = [
    ("all", "temperature", "gt", 100),
    ("device", "temperature", "gt", 40),
    ("device", "humidity", "gte", 85),
    ("device", "pressure", "lt", 980),
    ("device", "temperature", "lt", 0),
    ("type", "humidity", "gt", 90),
    ("type", "pressure", "gt", 1040),
    ("type", "temperature", "gte", 60),
    ("all", "pressure", "lt", 950),
    ("all", "humidity", "lt", 5),
]


def trigger_rules(count, devices):
    """Disables every rule, then creates ``count`` enabled ones in the proportions of a real deployment: 40 % per
    device, 30 % per device type, 30 % for every device, over the three metrics, 1 in 10 of them firing on the 1 %
    of readings that breach."""
    Rule.objects.update(enabled=False)
    types = list(DeviceType.objects.filter(name__startswith="bench type ").order_by("name"))
    fleet = {str(device.pk): device for device in Device.objects.filter(serial_number__startswith="BENCH-")}
    rules = []
    for i in range(count):
        scope, metric, operator, threshold = _TRIGGER_RULE_KINDS[i % 10]
        target = {
            "all": {},
            "device": {"device": fleet[devices[i % len(devices)]]},
            "type": {"device_type": types[i % len(types)]},
        }[scope]
        rules.append(
            Rule(name=f"bench trigger {count}-{i}", metric=metric, operator=operator, threshold=threshold, **target)
        )
    Rule.objects.bulk_create(rules)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE rules")
    return rules


# The query dataset: one reading a minute with three numeric metrics, the last week with the rule trigger on (a
# dataset rule that does not dedupe turns 1 % of those readings into events), the rest loaded with it ignored.
_DATASET_INSERT = """
    INSERT INTO telemetry (device_id, time, metrics)
    SELECT d.id, g.t, jsonb_build_object(
        'temperature', round((20 + 5 * sin(extract(epoch FROM g.t) / 43200 * pi()) + random())::numeric, 2),
        'humidity', round((45 + 10 * random())::numeric, 1),
        'pressure', CASE WHEN random() < 0.01 THEN 1045 ELSE round((990 + 40 * random())::numeric, 1) END)
    FROM devices d
    CROSS JOIN generate_series(%(start)s::timestamptz, %(stop)s::timestamptz - interval '1 minute',
                               interval '1 minute') AS g(t)
    WHERE d.serial_number LIKE 'DATASET-%%'
"""


def create_dataset_fleet(devices):
    dataset_type = DeviceType.objects.create(name="bench dataset type")
    Device.objects.bulk_create(
        Device(name=f"dataset {i}", serial_number=f"DATASET-{i:04d}", device_type=dataset_type) for i in range(devices)
    )
    Rule.objects.create(
        name=DATASET_RULE, device_type=dataset_type, metric="pressure", operator="gt", threshold=1040, dedupe=False
    )
    return [str(pk) for pk in Device.objects.filter(serial_number__startswith="DATASET-").values_list("id", flat=True)]


def load_dataset(database_url, *, end, days, triggered_days=7, workers=2):
    """Inserts ``days`` of readings ending at ``end`` for the dataset fleet, a day per statement, ``workers``
    connections in parallel; returns the number of rows."""
    ignore = ignore_setting()
    days_left = list(range(days))
    lock = threading.Lock()
    rows = [0]
    failures = []

    def work():
        try:
            conn = psycopg2.connect(database_url)
        except Exception as exc:  # re-raised in the caller's thread
            failures.append(exc)
            return
        try:
            with conn.cursor() as cursor:
                while True:
                    with lock:
                        if not days_left:
                            return
                        day = days_left.pop()
                    stop = end - timedelta(days=day)
                    if day >= triggered_days:
                        cursor.execute("SELECT set_config('pgtrigger.ignore', %s, true)", [ignore])
                    cursor.execute(_DATASET_INSERT, {"start": stop - timedelta(days=1), "stop": stop})
                    inserted = cursor.rowcount
                    conn.commit()
                    with lock:
                        rows[0] += inserted
        except Exception as exc:  # re-raised in the caller's thread
            failures.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE telemetry")
    return rows[0]


def minute_floor(moment):
    return moment.replace(second=0, microsecond=0)


def utc_now():
    return datetime.now(UTC)


def telemetry_count():
    return Telemetry.objects.count()


# One device's readings for the CSV export, 100 ms apart and ending now: two numbers and a boolean each.
_EXPORT_INSERT = """
    INSERT INTO telemetry (device_id, time, metrics)
    SELECT %(device)s, %(end)s::timestamptz - (%(rows)s - g.n) * interval '100 milliseconds', jsonb_build_object(
        'temperature', round((20 + (g.n %% 100) / 10.0)::numeric, 2),
        'humidity', 40 + g.n %% 50,
        'door_open', g.n %% 7 = 0)
    FROM generate_series(0, %(rows)s - 1) AS g(n)
"""


def load_export_device(database_url, *, rows, end):
    """A device with ``rows`` readings before ``end`` (rules not evaluated: not what is measured); its id."""
    device_type = DeviceType.objects.create(name="bench export type")
    device = Device.objects.create(name="bench export", serial_number="EXPORT-0001", device_type=device_type)
    with psycopg2.connect(database_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT set_config('pgtrigger.ignore', %s, true)", [ignore_setting()])
        cursor.execute(_EXPORT_INSERT, {"device": str(device.pk), "end": end, "rows": rows})
    conn.close()
    return str(device.pk)
