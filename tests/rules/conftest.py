"""Helpers for rule tests: readings are inserted with plain SQL, as any writer could."""

import json

import pytest
from django.db import connection


def insert_readings(readings, cursor=None):
    """INSERT (device_id, time, metrics) rows into telemetry in one statement, like the ingest path does.

    Returns the number of rows inserted (duplicates of (device_id, time) are skipped by ON CONFLICT DO NOTHING).
    """
    rows = [
        {"device_id": str(device_id), "time": time.isoformat(), "metrics": metrics}
        for device_id, time, metrics in readings
    ]
    sql = """
        INSERT INTO telemetry (device_id, time, metrics)
        SELECT (r ->> 'device_id')::uuid, (r ->> 'time')::timestamptz, r -> 'metrics'
        FROM jsonb_array_elements(%s::jsonb) r
        ON CONFLICT DO NOTHING
    """
    if cursor is not None:
        cursor.execute(sql, [json.dumps(rows)])
        return cursor.rowcount
    with connection.cursor() as own_cursor:
        own_cursor.execute(sql, [json.dumps(rows)])
        return own_cursor.rowcount


@pytest.fixture
def insert():
    return insert_readings
