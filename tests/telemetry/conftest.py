"""Fixtures of the telemetry tests."""

import pytest
from django.db import connection
from psycopg2 import sql

from telemetry import timescale
from tests.telemetry.test_rollups import _reset_rollups


@pytest.fixture
def committed_aggregates(transactional_db, timescaledb_edition):
    """For tests that commit and refresh the aggregates, on either edition: the aggregates start and end as the
    migrations left them (the other tests insert readings in the past and expect them in the real-time part)."""

    def reset():
        if timescaledb_edition == timescale.APACHE:
            _reset_rollups()
            return
        with connection.cursor() as cursor:
            for aggregate in reversed(timescale.AGGREGATES):  # truncating a continuous aggregate resets its watermark
                cursor.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(aggregate.name)))

    reset()
    yield
    reset()
