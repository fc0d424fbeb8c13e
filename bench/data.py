"""What the benchmarks load: the fleet, the rules, readings identical to load.lua's, and the query dataset.

Needs Django set up on the stack's database (bench.__main__ does it).
"""

import threading
from datetime import UTC, datetime, timedelta

import orjson
import pgtrigger
import psycopg2
from django.db import connection, transaction

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
    # Declaring what the readings and the rules name: rules for a type or a device name a declared metric.
    metrics = [{"name": name} for name in ("temperature", "humidity", "pressure", "battery")]
    types = [DeviceType.objects.create(name=f"bench type {i}", metrics=metrics) for i in range(DEVICE_TYPES)]
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


# The mixed set (issue 14) turns some kinds into the other rule shapes, by i % 10: a duration on a rule that matches
# the breaches (its spans stay pending: the readings are µs apart), hysteresis on one that never matches and on one
# that matches the breaches (each breach opens an event, the next reading resolves it), no-data rules on a metric the
# readings carry (never silent) and on one they never carry (silent: their open silences make the trigger check
# every statement of those devices for readings that end them).
_MIXED_RULE_KINDS = {
    1: {"for_seconds": 60},
    2: {"auto_resolve": True, "clear_threshold": 80},
    3: {"kind": "no_data", "no_data_seconds": 300},
    5: {"kind": "no_data", "no_data_seconds": 300, "metric": "battery"},
    7: {"auto_resolve": True, "clear_threshold": 50},
}


def trigger_rules(count, devices, *, mixed=False):
    """Disables every rule, then creates ``count`` enabled ones in the proportions of a real deployment: 40 % per
    device, 30 % per device type, 30 % for every device, over the three metrics, 1 in 10 of them firing on the 1 %
    of readings that breach. ``mixed``: half of them durations, hysteresis and no-data rules (_MIXED_RULE_KINDS),
    with the no-data rules' silences evaluated once."""
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
        fields = {"metric": metric, "operator": operator, "threshold": threshold, **target}
        shape = _MIXED_RULE_KINDS.get(i % 10, {}) if mixed else {}
        if shape.get("kind") == "no_data":
            fields.update(operator=None, threshold=None, message_template="{device_name}: silent for {silent_for}")
        fields.update(shape)
        rules.append(Rule(name=f"bench trigger {'mixed ' if mixed else ''}{count}-{i}", **fields))
    Rule.objects.bulk_create(rules)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE rules")
        if mixed:  # as the worker would find them an hour from now
            cursor.execute("SELECT * FROM rules_evaluate_no_data(now() + interval '1 hour')")
    return rules


def no_data_fleet(devices, *, minutes=10, every_seconds=30):
    """``devices`` devices of three metrics, each with a reading every ``every_seconds`` over the last ``minutes``,
    loaded with the rule trigger ignored; 1 % have not sent humidity in that time and 1 % nothing at all.
    Returns the number of readings and the moment they end (the load's now()), the time to evaluate at."""
    device_type = DeviceType.objects.create(
        name="bench no-data type", metrics=[{"name": name} for name in ("temperature", "humidity", "pressure")]
    )
    Device.objects.bulk_create(
        Device(name=f"nodata {i}", serial_number=f"NODATA-{i:06d}", device_type=device_type) for i in range(devices)
    )
    with transaction.atomic(), pgtrigger.ignore(TRIGGER), connection.cursor() as cursor:
        # Active since well before the window: their silences count from their readings.
        cursor.execute(
            "UPDATE devices SET status_changed_at = now() - interval '1 day' WHERE serial_number LIKE 'NODATA-%%'"
        )
        cursor.execute(
            """
            INSERT INTO telemetry (device_id, time, metrics)
            SELECT d.id, g.t, CASE WHEN d.n %% 100 = 1
                THEN jsonb_build_object('temperature', 20, 'pressure', 1000)
                ELSE jsonb_build_object('temperature', 20, 'humidity', 50, 'pressure', 1000) END
            FROM (SELECT id, row_number() OVER (ORDER BY serial_number) AS n FROM devices
                  WHERE serial_number LIKE 'NODATA-%%') d
            CROSS JOIN generate_series(now() - %s * interval '1 minute', now(), %s * interval '1 second') g(t)
            WHERE d.n %% 100 <> 0
            """,
            [minutes, every_seconds],
        )
        readings = cursor.rowcount
        cursor.execute("SELECT now()")
        (loaded_at,) = cursor.fetchone()
        cursor.execute("ANALYZE devices")
        cursor.execute("ANALYZE telemetry")
    Rule.objects.bulk_create(
        Rule(
            name=f"bench no-data {metric}",
            kind="no_data",
            metric=metric,
            no_data_seconds=300,
            message_template="{device_name}: no {metric} for {silent_for}",
        )
        for metric in ("temperature", "humidity", "pressure")
    )
    return readings, loaded_at


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
    dataset_type = DeviceType.objects.create(
        name="bench dataset type", metrics=[{"name": name} for name in ("temperature", "humidity", "pressure")]
    )
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
