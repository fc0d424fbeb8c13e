"""The bad-input corpus: one table of hostile bodies, sent to ingest and to every write endpoint.

Each entry must get a clear 4xx problem and change nothing in the database (every table the API writes is
fingerprinted before and after). SQL- and script-looking strings are the exception: they are ordinary text, stored
and returned exactly. A body over 1 MiB is refused from its Content-Length, before the server reads any of it.
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
from django.apps import apps
from django.db import connection, transaction
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from tests.conftest import HTTPS, assert_problem, client_for
from tests.factories import PASSWORD, NotificationChannelFactory, UserFactory

pytestmark = pytest.mark.django_db

API = "/api/v1/"
LIMIT = 1024 * 1024


class Endpoint(NamedTuple):
    method: str
    path: str  # filled from the world: {user}, {device_type}, {device}, {rule}, {channel}, {event}
    role: str  # who calls it: "anonymous" or a role
    body: Callable  # world -> a valid body


def _now():
    # Microseconds: the world's readings lie on whole seconds, and one of them at this device and time with another
    # temperature would make the reading a conflict (a 409), not the valid body it stands for.
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _reading(world):
    return {
        "device_id": str(world.device.pk),
        "timestamp": _now(),
        "metrics": {"temperature": 21.5, "mode": "eco", "power": {"voltage": 229.8}},
    }


def _user(world):
    return {"username": "newcomer", "first_name": "New", "role": "viewer", "password": "a-long-passphrase-42"}


def _device_type(world):
    return {"name": "hygrometer", "description": "Relative humidity", "metrics": [{"name": "rh", "unit": "%"}]}


def _device(world):
    return {
        "name": "fan",
        "serial_number": "SN-FAN",
        "location": "roof",
        "device_type": world.device_type.pk,
        "metadata": {"site": "north", "rack": {"row": "B"}},
    }


def _rule(world):
    return {
        "name": "mode check",
        "description": "Eco mode is an event",
        "metric": "mode",
        "operator": "eq",
        "threshold": "eco",
        "channels": [world.channel.pk],
    }


def _channel(world):
    return {"name": "on-call mail", "kind": "email", "target": "ops@example.com"}


def _refresh(world):
    return {"refresh": str(RefreshToken.for_user(world.users["viewer"]))}


ENDPOINTS = {
    "ingest": Endpoint("POST", "telemetry/ingest/", "anonymous", _reading),
    "users create": Endpoint("POST", "users/", "admin", _user),
    "users update": Endpoint("PUT", "users/{user}/", "admin", _user),
    "users partial update": Endpoint("PATCH", "users/{user}/", "admin", lambda world: {"first_name": "Bo"}),
    "device-types create": Endpoint("POST", "device-types/", "admin", _device_type),
    "device-types update": Endpoint("PUT", "device-types/{device_type}/", "admin", _device_type),
    "device-types partial update": Endpoint("PATCH", "device-types/{device_type}/", "admin", _device_type),
    "devices create": Endpoint("POST", "devices/", "operator", _device),
    "devices update": Endpoint("PUT", "devices/{device}/", "operator", _device),
    "devices partial update": Endpoint("PATCH", "devices/{device}/", "operator", _device),
    "rules create": Endpoint("POST", "rules/", "admin", _rule),
    "rules update": Endpoint("PUT", "rules/{rule}/", "admin", _rule),
    "rules partial update": Endpoint("PATCH", "rules/{rule}/", "admin", _rule),
    "notification-channels create": Endpoint("POST", "notification-channels/", "admin", _channel),
    "notification-channels update": Endpoint("PUT", "notification-channels/{channel}/", "admin", _channel),
    "notification-channels partial update": Endpoint("PATCH", "notification-channels/{channel}/", "admin", _channel),
    "events acknowledge": Endpoint("POST", "events/{event}/acknowledge/", "operator", lambda world: {"note": "on it"}),
    "events resolve": Endpoint("POST", "events/{event}/resolve/", "operator", lambda world: {"note": "fixed"}),
    "token": Endpoint(
        "POST", "auth/token/", "anonymous", lambda world: {"username": "bystander", "password": PASSWORD}
    ),
    "token refresh": Endpoint("POST", "auth/token/refresh/", "anonymous", _refresh),
    "logout": Endpoint("POST", "auth/logout/", "anonymous", _refresh),
}


# The corpus. Each entry turns a valid body into raw bytes and a content type; None when it does not apply.


def _dumps(body):
    return json.dumps(body).encode()


def _with_first_value(body, raw):
    """The body with its first member's value replaced by the raw JSON text ``raw``."""
    first = next(iter(body))
    text = json.dumps({**body, first: "@@RAW@@"})
    return text.replace('"@@RAW@@"', raw, 1).encode()


def _map_strings(value, change):
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {key: _map_strings(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return [_map_strings(item, change) for item in value]
    return value


def _nested_keys_with_nul(body):
    """Every key below the top level gets a U+0000; None for a flat body."""

    def rename(value):
        if isinstance(value, dict):
            return {f"{key}\x00": rename(item) for key, item in value.items()}
        if isinstance(value, list):
            return [rename(item) for item in value]
        return value

    nested = {key: rename(value) for key, value in body.items()}
    return None if nested == body else _dumps(nested)


def _invalid_utf8(body):
    text = _dumps(body)
    quote = text.index(b'": "') + 4  # inside the first string value
    return text[:quote] + b"\xff\xfe\xc3\x28" + text[quote:]


JSON = "application/json"
CORPUS = {
    "malformed JSON": lambda body: (b'{"name": "unterminated', JSON),
    "truncated JSON": lambda body: (_dumps(body)[: len(_dumps(body)) // 2], JSON),
    "trailing garbage": lambda body: (_dumps(body) + b"}", JSON),
    "not an object": lambda body: (b'"just a string"', JSON),
    "text/plain": lambda body: (_dumps(body), "text/plain"),
    "form-encoded": lambda body: (b"name=x&role=admin", "application/x-www-form-urlencoded"),
    "multipart": lambda body: (
        b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
    ),
    "XML": lambda body: (b"<name>x</name>", "application/xml"),
    "nesting 10,000 deep (arrays)": lambda body: (_with_first_value(body, "[" * 10_000 + "]" * 10_000), JSON),
    "nesting 10,000 deep (objects)": lambda body: (
        _with_first_value(body, '{"a":' * 10_000 + "1" + "}" * 10_000),
        JSON,
    ),
    "5,000 unknown keys": lambda body: (_dumps({**body, **{f"k{index}": index for index in range(5_000)}}), JSON),
    "NaN": lambda body: (_with_first_value(body, "NaN"), JSON),
    "Infinity": lambda body: (_with_first_value(body, "Infinity"), JSON),
    "-Infinity": lambda body: (_with_first_value(body, "-Infinity"), JSON),
    "1e400": lambda body: (_with_first_value(body, "1e400"), JSON),
    "10**400": lambda body: (_with_first_value(body, "1" + "0" * 400), JSON),
    "U+0000 in every string": lambda body: (_dumps(_map_strings(body, lambda text: f"{text}\x00")), JSON),
    "U+0000 in a key": lambda body: (_dumps({f"{next(iter(body))}\x00": 1, **body}), JSON),
    "U+0000 in nested keys": lambda body: (lambda raw: raw and (raw, JSON))(_nested_keys_with_nul(body)),
    "invalid UTF-8": lambda body: (_invalid_utf8(body), JSON),
    "UTF-16": lambda body: (json.dumps(body).encode("utf-16"), JSON),
    "unknown field": lambda body: (_dumps({**body, "is_superuser": True}), JSON),
}

# Timestamps only ingest takes (computed when the test runs: "6 minutes ahead" must still be ahead).
TIMESTAMPS = {
    "a naive timestamp": lambda now: "2026-01-01T12:00:00",
    "a +02:00 offset": lambda now: (now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00"),
    "a -00:00 offset": lambda now: now.strftime("%Y-%m-%dT%H:%M:%S-00:00"),
    "far in the future": lambda now: "2999-01-01T00:00:00Z",
    "6 minutes ahead": lambda now: (now + timedelta(minutes=6)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "before the retention window": lambda now: (now - timedelta(days=91)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "year 0": lambda now: "0000-01-01T00:00:00Z",
    "a date alone": lambda now: "2026-01-01",
    "a Unix time": lambda now: 1767268800,
    "7 fractional digits": lambda now: now.strftime("%Y-%m-%dT%H:%M:%S.1234567Z"),
}

# U+0000 where the value is JSON the database stores as jsonb, which can't hold it: with every other field valid.
NUL_IN_JSON = {
    "ingest": ("metrics", {"mode": "eco\x00"}),
    "devices create": ("metadata", {"site": "north\x00"}),
    "devices partial update": ("metadata", {"site\x00": "north"}),
    "device-types create": ("metrics", [{"name": "rh", "unit": "%\x00"}]),
    "rules create": ("threshold", "eco\x00"),
    "rules partial update": ("threshold", "eco\x00"),
}

EXPECTED_CODE = {
    "text/plain": "unsupported_media_type",
    "form-encoded": "unsupported_media_type",
    "multipart": "unsupported_media_type",
    "XML": "unsupported_media_type",
}
PARSE_ERRORS = {
    "malformed JSON",
    "truncated JSON",
    "trailing garbage",
    "nesting 10,000 deep (arrays)",
    "nesting 10,000 deep (objects)",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "10**400",
    "invalid UTF-8",
    "UTF-16",
}


def _expected(entry):
    if entry in EXPECTED_CODE:
        return 415, EXPECTED_CODE[entry]
    if entry in PARSE_ERRORS:
        return 400, "parse_error"
    return 400, None  # a validation problem: "invalid", or the token's own refusal


# The tables every write endpoint may touch: a fingerprint of each, before and after.
TABLES = [
    "users",
    "device_types",
    "devices",
    "telemetry",
    "rules",
    "rule_channels",
    "events",
    "notifications",
    "notification_channels",
    "token_blacklist_outstandingtoken",
    "token_blacklist_blacklistedtoken",
    # A hostile body to a login path is refused before it is an attempt: no failed login is counted.
    "login_counters",
]


_FINGERPRINT = "SELECT '{table}', count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {table} t"


def database_state():
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(_FINGERPRINT.format(table=table) for table in TABLES))
        return {table: (count, digest) for table, count, digest in cursor.fetchall()}


@pytest.fixture
def corpus_world(world):
    world.bystander = UserFactory(username="bystander", role="viewer")
    world.spare_channel = NotificationChannelFactory(name="spare channel")
    return world


def _url(endpoint, world):
    ids = {
        "user": world.bystander.pk,
        "device_type": world.spare_device_type.pk,
        "device": world.spare_device.pk,
        "rule": world.rule.pk,
        "channel": world.spare_channel.pk,
        "event": world.open_event.pk,
    }
    return API + endpoint.path.format(**ids)


def _client(endpoint, world):
    return APIClient(**HTTPS) if endpoint.role == "anonymous" else client_for(world.users[endpoint.role])


def _send(endpoint, world, raw, content_type, client=None, **extra):
    client = client or _client(endpoint, world)
    return client.generic(endpoint.method, _url(endpoint, world), data=raw, content_type=content_type, **extra)


def _refused(endpoint, world, raw, content_type):
    """(status, code, database changed) for one hostile body; the request runs in a savepoint rolled back after."""
    client = _client(endpoint, world)  # issuing its token writes a row: before the fingerprint
    with transaction.atomic():
        before = database_state()
        response = _send(endpoint, world, raw, content_type, client)
        changed = database_state() != before
        transaction.set_rollback(True)
    if response.status_code >= 400:
        assert_problem(response, response.status_code)
        return response.status_code, response.json()["code"], changed
    return response.status_code, None, changed


@pytest.mark.parametrize("name", ENDPOINTS)
def test_the_valid_body_is_accepted(name, corpus_world):
    """The control: each endpoint's valid body succeeds, so the refusals below are about the corpus."""
    endpoint = ENDPOINTS[name]
    response = _send(endpoint, corpus_world, _dumps(endpoint.body(corpus_world)), JSON)
    assert response.status_code in (200, 201, 204), response.content


@pytest.mark.parametrize("name", ENDPOINTS)
def test_every_hostile_body_is_a_4xx_problem_that_stores_nothing(name, corpus_world):
    endpoint = ENDPOINTS[name]
    body = endpoint.body(corpus_world)
    answered, expected = {}, {}
    for entry, corrupt in CORPUS.items():
        request = corrupt(body)
        if request is None:
            continue
        status, code, changed = _refused(endpoint, corpus_world, *request)
        want_status, want_code = _expected(entry)
        answered[entry] = (status, code if want_code else None, changed)
        expected[entry] = (want_status, want_code, False)
    assert answered == expected


@pytest.mark.parametrize("case", TIMESTAMPS)
def test_ingest_refuses_timestamps_outside_the_rules_and_stores_nothing(case, corpus_world):
    endpoint = ENDPOINTS["ingest"]
    body = {**endpoint.body(corpus_world), "timestamp": TIMESTAMPS[case](datetime.now(UTC))}
    status, code, changed = _refused(endpoint, corpus_world, _dumps(body), JSON)
    assert (status, code, changed) == (400, "invalid", False)


@pytest.mark.parametrize("name", NUL_IN_JSON)
def test_u0000_in_json_values_is_refused_not_a_database_error(name, corpus_world):
    endpoint = ENDPOINTS[name]
    field, value = NUL_IN_JSON[name]
    body = {**endpoint.body(corpus_world), field: value}
    status, code, changed = _refused(endpoint, corpus_world, _dumps(body), JSON)
    assert (status, code, changed) == (400, "invalid", False)


def test_a_batch_with_one_bad_timestamp_stores_none_of_it(corpus_world):
    endpoint = ENDPOINTS["ingest"]
    good = endpoint.body(corpus_world)
    batch = [good, {**good, "timestamp": "2999-01-01T00:00:00Z"}, {**good, "timestamp": "2026-01-01T00:00:00"}]
    client = _client(endpoint, corpus_world)
    with transaction.atomic():
        before = database_state()
        response = _send(endpoint, corpus_world, _dumps(batch), JSON, client)
        assert database_state() == before
    body = assert_problem(response, 400, "invalid")
    assert [error["pointer"] for error in body["errors"]] == ["/1/timestamp", "/2/timestamp"]


class CountingStream:
    """A request body of ``size`` bytes that counts how much of it the server reads."""

    def __init__(self, size):
        self.size = size
        self.read_bytes = 0

    def read(self, size=-1):
        remaining = self.size - self.read_bytes
        size = remaining if size is None or size < 0 else min(size, remaining)
        self.read_bytes += size
        return b"[" + b" " * (size - 1) if size else b""

    def readline(self, size=-1):
        return self.read(size)


@pytest.mark.parametrize("name", ENDPOINTS)
def test_a_body_over_1_mib_is_refused_before_it_is_read(name, corpus_world):
    endpoint = ENDPOINTS[name]
    stream = CountingStream(64 * LIMIT)
    client = _client(endpoint, corpus_world)
    with transaction.atomic():
        before = database_state()
        response = _send(
            endpoint, corpus_world, b"", JSON, client, CONTENT_LENGTH=str(stream.size), **{"wsgi.input": stream}
        )
        assert database_state() == before
    assert_problem(response, 413, "payload_too_large")
    assert stream.read_bytes == 0


@pytest.mark.parametrize("name", ["ingest", "devices create", "users create"])
def test_a_body_of_1_mib_and_1_byte_is_refused(name, corpus_world):
    endpoint = ENDPOINTS[name]
    raw = _dumps({**endpoint.body(corpus_world), "padding": ""})
    raw = raw[:-2] + b" " * (LIMIT + 1 - len(raw)) + raw[-2:]
    assert len(raw) == LIMIT + 1
    status, code, changed = _refused(endpoint, corpus_world, raw, JSON)
    assert (status, code, changed) == (413, "payload_too_large", False)


# Strings that look like SQL or script are text: stored and answered byte for byte.
VERBATIM = ["'; DROP TABLE devices; --", "<script>alert(1)</script>", "Robert'); DELETE FROM users WHERE ('1'='1"]


@pytest.mark.parametrize("text", VERBATIM)
def test_sql_and_script_looking_strings_are_stored_verbatim(text, corpus_world):
    world = corpus_world
    admin, operator = client_for(world.users["admin"]), client_for(world.users["operator"])

    device = operator.post(
        f"{API}devices/",
        _dumps({**_device(world), "name": text, "location": text, "metadata": {"note": text, text[:20]: 1}}),
        content_type=JSON,
    ).json()
    stored = operator.get(f"{API}devices/{device['id']}/").json()
    assert (stored["name"], stored["location"], stored["metadata"]["note"]) == (text, text, text)
    assert stored["metadata"][text[:20]] == 1
    assert [found["id"] for found in operator.get(f"{API}devices/", {"search": text}).json()["results"]] == [
        device["id"]
    ]

    device_type = admin.post(
        f"{API}device-types/", _dumps({"name": text, "description": text}), content_type=JSON
    ).json()
    assert admin.get(f"{API}device-types/{device_type['id']}/").json()["description"] == text

    rule = admin.post(
        f"{API}rules/",
        _dumps({**_rule(world), "name": text, "description": text, "threshold": text}),
        content_type=JSON,
    ).json()
    stored = admin.get(f"{API}rules/{rule['id']}/").json()
    assert (stored["name"], stored["description"], stored["threshold"]) == (text, text, text)

    channel = admin.post(
        f"{API}notification-channels/", _dumps({"name": text, "kind": "log", "target": text}), content_type=JSON
    ).json()
    stored = admin.get(f"{API}notification-channels/{channel['id']}/").json()
    assert (stored["name"], stored["target"]) == (text, text)

    user = admin.post(
        f"{API}users/", _dumps({**_user(world), "first_name": text[:150], "last_name": text[:150]}), content_type=JSON
    ).json()
    assert admin.get(f"{API}users/{user['id']}/").json()["last_name"] == text[:150]

    event = operator.post(
        f"{API}events/{world.open_event.pk}/acknowledge/", _dumps({"note": text}), content_type=JSON
    ).json()
    assert operator.get(f"{API}events/{event['id']}/").json()["acknowledged_note"] == text

    # Microseconds: a whole-second time could be one of the world's readings, and a duplicate is not stored.
    reading = {**_reading(world), "timestamp": datetime.now(UTC).isoformat(), "metrics": {"mode": text}}
    assert APIClient(**HTTPS).post(f"{API}telemetry/ingest/", _dumps(reading), content_type=JSON).status_code == 201
    latest = operator.get(f"{API}devices/{world.device.pk}/telemetry/latest/").json()
    assert latest["metrics"]["mode"]["value"] == text

    # And nothing broke: every table is still there and answering.
    assert set(database_state()) == set(TABLES)
    assert apps.get_model("telemetry", "Device").objects.filter(name=text).count() == 1
