"""CSV exports of a device's readings and aggregates: streamed from a server-side cursor in one transaction, with no
row cap, the JSON endpoints' filters, times in UTC with Z and numbers as sent (both editions)."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from tests.conftest import assert_problem
from tests.factories import DeviceFactory, insert_readings
from tests.telemetry.test_aggregates import aggregate_url, iso

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def readings_url(device):
    return f"/api/v1/devices/{device.pk}/telemetry/"


def window(hours=24):
    return {"start": iso(T0 - timedelta(hours=1)), "end": iso(T0 + timedelta(hours=hours))}


def rows_of(response):
    assert response.status_code == 200, response.content
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def device(db):
    return DeviceFactory()


def ingest(api_client, body):
    response = api_client.post("/api/v1/telemetry/ingest/", body, content_type="application/json")
    assert response.status_code == 201, response.content


def test_readings_as_csv_keep_what_was_sent(viewer_client, api_client, device, settings):
    settings.TELEMETRY_RETENTION_DAYS = 3650  # T0 may lie in the past
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    first, second = iso(moment), iso(moment + timedelta(seconds=1, microseconds=250_000))
    ingest(
        api_client,
        f'[{{"device_id": "{device.pk}", "timestamp": "{first}", "metrics": {{"temp": 21.50, "big": 1e3, '
        f'"door": true, "mode": "eco, quiet", "pos": {{"x": 1}}}}}},'
        f' {{"device_id": "{device.pk}", "timestamp": "{second}", "metrics": {{"temp": -0.125}}}}]',
    )
    params = {"start": iso(moment - timedelta(hours=1)), "end": iso(moment + timedelta(hours=1)), "order": "asc"}

    rows = rows_of(viewer_client.get(readings_url(device), {**params, "format": "csv"}))

    # Numbers as stored, the text the JSON endpoint gives (ingest parsed 1e3 as the double 1000.0).
    assert rows == [
        ["timestamp", "big", "door", "mode", "pos", "temp"],
        [first, "1000.0", "true", "eco, quiet", '{"x": 1}', "21.5"],
        [iso(moment + timedelta(seconds=1, microseconds=250_000)), "", "", "", "", "-0.125"],
    ]
    assert second.endswith(".250000Z")
    # The Accept header chooses CSV as well; newest first by default, as in JSON.
    by_accept = rows_of(viewer_client.get(readings_url(device), params | {"order": "desc"}, HTTP_ACCEPT="text/csv"))
    assert by_accept == [rows[0], rows[2], rows[1]]


def test_the_json_filters_apply_and_there_is_no_row_cap(viewer_client, device):
    readings = [(T0 + timedelta(seconds=n), {"a": n, "b": -n} if n % 2 else {"c": n}) for n in range(5000)]
    insert_readings(device, readings)

    rows = rows_of(viewer_client.get(readings_url(device), {**window(), "format": "csv", "order": "asc"}))
    assert len(rows) == 1 + 5000  # past the page size, past a cursor chunk (2,000)
    assert rows[0] == ["timestamp", "a", "b", "c"]
    assert rows[1] == [iso(T0), "", "", "0"]

    # metrics=b,a: the columns in that order, only readings holding one of them; start/end as in JSON.
    params = {"format": "csv", "metrics": "b,a", "start": iso(T0), "end": iso(T0 + timedelta(seconds=6))}
    assert rows_of(viewer_client.get(readings_url(device), params)) == [
        ["timestamp", "b", "a"],
        [iso(T0 + timedelta(seconds=5)), "-5", "5"],
        [iso(T0 + timedelta(seconds=3)), "-3", "3"],
        [iso(T0 + timedelta(seconds=1)), "-1", "1"],
    ]


def test_an_empty_range_is_a_header(viewer_client, device):
    assert rows_of(viewer_client.get(readings_url(device), {**window(), "format": "csv"})) == [["timestamp"]]


def test_errors_stay_problem_documents(viewer_client, api_client, device):
    other = f"/api/v1/devices/{DeviceFactory.build().pk}/telemetry/"
    assert_problem(viewer_client.get(other, {"format": "csv"}), 404)
    body = assert_problem(viewer_client.get(readings_url(device), {"format": "csv", "end": "yesterday"}), 400)
    assert body["errors"][0]["parameter"] == "end"
    # An export is not paginated: the pages' parameters are refused with it.
    body = assert_problem(viewer_client.get(readings_url(device), {"format": "csv", "page_size": "10"}), 400)
    assert body["errors"][0]["parameter"] == "page_size"
    body = assert_problem(viewer_client.get(readings_url(device), {"format": "xml"}), 400)
    assert body["errors"][0]["detail"] == "Must be one of: json, csv."
    assert_problem(api_client.get(readings_url(device), {"format": "csv"}), 401)


def test_the_export_streams_from_a_server_side_cursor(viewer_client, device):
    insert_readings(device, [(T0 + timedelta(seconds=n), {"a": n}) for n in range(30_000)])
    response = viewer_client.get(readings_url(device), {**window(), "format": "csv"})
    chunks = iter(response.streaming_content)
    lines = next(chunks).count(b"\n")
    with connection.cursor() as cursor:  # the request's connection, inside the export's transaction
        cursor.execute("SELECT count(*) FROM pg_cursors WHERE name LIKE 'export\\_%%'")
        assert cursor.fetchone() == (1,)
        cursor.execute("SELECT current_setting('statement_timeout')")
        assert cursor.fetchone() == ("0",)
    assert lines < 30_001  # streamed: the first block holds the header and some rows, not all
    assert lines + sum(chunk.count(b"\n") for chunk in chunks) == 30_001  # read to the end: the export closed
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_cursors WHERE name LIKE 'export\\_%%'")
        assert cursor.fetchone() == (0,)


@pytest.mark.django_db(transaction=True)
def test_the_export_is_one_repeatable_read_transaction_without_timeouts(viewer_client, device):
    insert_readings(device, [(T0 + timedelta(seconds=n), {"a": n}) for n in range(10)])
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = '5s'")
    try:
        response = viewer_client.get(readings_url(device), {**window(), "format": "csv"})
        next(iter(response.streaming_content))
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('transaction_isolation'), current_setting('statement_timeout'),"
                " current_setting('idle_in_transaction_session_timeout')"
            )
            assert cursor.fetchone() == ("repeatable read", "0", "0")
        b"".join(response.streaming_content)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")


def test_aggregates_as_csv_match_the_json_answer(viewer_client, device):
    insert_readings(device, [(T0 + timedelta(minutes=7 * n), {"t": n / 4, "h": 50 - n, "s": "x"}) for n in range(40)])
    params = {**window(6), "interval": "1h"}
    answer = viewer_client.get(aggregate_url(device), params).json()

    response = viewer_client.get(aggregate_url(device), {**params, "format": "csv"})
    assert response.get("Complete-Until") == answer["complete_until"]
    rows = rows_of(response)

    statistics = ("count", "min", "max", "avg", "sum")
    assert rows[0] == ["bucket", *(f"{metric}:{stat}" for metric in ("h", "t") for stat in statistics)]
    by_bucket = {}
    for result in answer["results"]:
        by_bucket.setdefault(result["bucket"], {})[result["metric"]] = result
    assert len(rows) - 1 == len(by_bucket) >= 4
    for row in rows[1:]:
        expected = [str(by_bucket[row[0]][metric][stat]) for metric in ("h", "t") for stat in statistics]
        assert [float(cell) for cell in row[1:]] == [float(cell) for cell in expected]


def test_aggregates_as_csv_have_no_bucket_limit(viewer_client, device):
    insert_readings(device, [(T0, {"t": 1}), (T0 + timedelta(days=8), {"t": 2})])
    params = {"start": iso(T0), "end": iso(T0 + timedelta(days=9)), "interval": "1m", "metrics": "t"}
    assert_problem(viewer_client.get(aggregate_url(device), params), 400, "invalid_parameter")  # 12,960 buckets
    rows = rows_of(viewer_client.get(aggregate_url(device), {**params, "format": "csv"}))
    assert rows == [
        ["bucket", "t:count", "t:min", "t:max", "t:avg", "t:sum"],
        [iso(T0), "1", "1.0", "1.0", "1.0", "1.0"],
        [iso(T0 + timedelta(days=8)), "1", "2.0", "2.0", "2.0", "2.0"],
    ]
