"""The role matrix: for every endpoint and method, the status each caller gets — anonymous, viewer, operator, admin.

Every request carries a valid body and names a real object, so the status says what the role may do, not whether
the input was right. Each role's request runs in a savepoint rolled back afterwards: every role meets the same
world. A second test proves the table covers every URL pattern under /api/v1/ and every method its view serves.
"""

import json
import re
import socket
from datetime import UTC, datetime
from typing import NamedTuple

import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from iothub.login_protection import login_attempt_begin
from iothub.models import LoginCounter
from rules.models import Notification
from rules.notifications import deliver_due_notifications
from tests.conftest import HTTPS, assert_problem, client_for
from tests.factories import PASSWORD, NotificationChannelFactory, RuleFactory, UserFactory, insert_readings
from tests.security.conftest import ROLES

pytestmark = pytest.mark.django_db

API_PREFIX = "/api/v1/"


class Row(NamedTuple):
    method: str
    path: str  # a template filled from the world: {user}, {device_type}, {device}, {rule}, {event}, {channel}…
    anonymous: int
    viewer: int
    operator: int
    admin: int
    body: object = None  # a valid body, or a callable of the world returning one

    @property
    def label(self):
        return f"{self.method} {self.path}"

    def expected(self, role):
        return getattr(self, role)


def _reading(world):
    # Microseconds: the world's readings are on whole seconds, and one of them may have this second (another
    # temperature at the same device and time would be a 409 conflict, not the role's answer).
    timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"device_id": str(world.device.pk), "timestamp": timestamp, "metrics": {"temperature": 21.5}}


def _refresh(world):
    return {"refresh": str(RefreshToken.for_user(world.bystander))}


USER = {"username": "newcomer", "email": "newcomer@example.com", "role": "viewer", "password": "a-long-passphrase-42"}
DEVICE_TYPE = {"name": "hygrometer", "description": "Relative humidity"}
CHANNEL = {"name": "on-call mail", "kind": "email", "target": "ops@example.com"}
RULE = {"name": "too cold", "metric": "temperature", "operator": "lt", "threshold": 0, "severity": "warning"}


def _device(world):
    return {"name": "fan", "serial_number": "SN-FAN", "device_type": world.device_type.pk, "status": "active"}


# Codes: 200 OK, 201 created, 204 no content, 401 not authenticated, 403 role not allowed.
MATRIX = [
    # Authentication: open to anyone; a caller's own token plays no part.
    Row("POST", "auth/token/", 200, 200, 200, 200, {"username": "bystander", "password": PASSWORD}),
    Row("POST", "auth/token/refresh/", 200, 200, 200, 200, _refresh),
    Row("POST", "auth/logout/", 204, 204, 204, 204, _refresh),
    Row("GET", "me/", 401, 200, 200, 200),
    # Open endpoints.
    Row("GET", "health/", 200, 200, 200, 200),
    Row("GET", "schema/", 200, 200, 200, 200),
    Row("GET", "docs/", 200, 200, 200, 200),
    Row("POST", "telemetry/ingest/", 201, 201, 201, 201, _reading),
    # Users: admins only.
    Row("GET", "users/", 401, 403, 403, 200),
    Row("POST", "users/", 401, 403, 403, 201, USER),
    Row("GET", "users/{user}/", 401, 403, 403, 200),
    Row("PUT", "users/{user}/", 401, 403, 403, 200, {"username": "bystander", "role": "operator", "is_active": True}),
    Row("PATCH", "users/{user}/", 401, 403, 403, 200, {"role": "operator"}),
    Row("DELETE", "users/{user}/", 401, 403, 403, 204),
    # Device types: every role reads, admins write.
    Row("GET", "device-types/", 401, 200, 200, 200),
    Row("POST", "device-types/", 401, 403, 403, 201, DEVICE_TYPE),
    Row("GET", "device-types/{device_type}/", 401, 200, 200, 200),
    Row("PUT", "device-types/{device_type}/", 401, 403, 403, 200, DEVICE_TYPE),
    Row("PATCH", "device-types/{device_type}/", 401, 403, 403, 200, {"description": "Spare parts"}),
    Row("DELETE", "device-types/{device_type}/", 401, 403, 403, 204),
    # Devices: every role reads, operators and admins write.
    Row("GET", "devices/", 401, 200, 200, 200),
    Row("POST", "devices/", 401, 403, 201, 201, _device),
    Row("GET", "devices/{device}/", 401, 200, 200, 200),
    Row("PUT", "devices/{device}/", 401, 403, 200, 200, _device),
    Row("PATCH", "devices/{device}/", 401, 403, 200, 200, {"location": "roof", "status": "maintenance"}),
    Row("DELETE", "devices/{device}/", 401, 403, 204, 204),
    # Device keys: operators and admins; viewers don't see them.
    Row("GET", "ingest-keys/", 401, 403, 200, 200),
    Row("POST", "ingest-keys/", 401, 403, 201, 201, lambda world: {"name": "new", "devices": [str(world.device.pk)]}),
    Row("GET", "ingest-keys/{ingest_key}/", 401, 403, 200, 200),
    Row("PUT", "ingest-keys/{ingest_key}/", 401, 403, 200, 200, {"name": "gateway 2", "devices": []}),
    Row("PATCH", "ingest-keys/{ingest_key}/", 401, 403, 200, 200, {"name": "gateway 2"}),
    Row("DELETE", "ingest-keys/{ingest_key}/", 401, 403, 204, 204),
    Row("POST", "ingest-keys/{ingest_key}/rotate/", 401, 403, 200, 200),
    # Telemetry queries: every role.
    Row("GET", "devices/{device}/telemetry/", 401, 200, 200, 200),
    Row("GET", "devices/{device}/telemetry/latest/", 401, 200, 200, 200),
    Row(
        "GET",
        "devices/{device}/telemetry/aggregate/?start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z&interval=1h",
        401,
        200,
        200,
        200,
    ),
    # Rules: every role reads, admins write.
    Row("GET", "rules/", 401, 200, 200, 200),
    Row("POST", "rules/", 401, 403, 403, 201, RULE),
    Row("GET", "rules/{rule}/", 401, 200, 200, 200),
    Row("PUT", "rules/{rule}/", 401, 403, 403, 200, RULE),
    Row("PATCH", "rules/{rule}/", 401, 403, 403, 200, {"enabled": False}),
    Row("DELETE", "rules/{rule}/", 401, 403, 403, 204),
    # Events: every role reads, operators and admins act on them.
    Row("GET", "events/", 401, 200, 200, 200),
    Row("GET", "events/{event}/", 401, 200, 200, 200),
    Row("POST", "events/{event}/acknowledge/", 401, 403, 200, 200, {"note": "on it"}),
    Row("POST", "events/{event}/resolve/", 401, 403, 200, 200, {}),
    # Notifications: read-only for every role; channels written by admins.
    Row("GET", "notifications/", 401, 200, 200, 200),
    Row("GET", "notifications/{notification}/", 401, 200, 200, 200),
    Row("GET", "notification-channels/", 401, 200, 200, 200),
    Row("POST", "notification-channels/", 401, 403, 403, 201, CHANNEL),
    Row("GET", "notification-channels/{channel}/", 401, 200, 200, 200),
    Row("PUT", "notification-channels/{channel}/", 401, 403, 403, 200, CHANNEL),
    Row("PATCH", "notification-channels/{channel}/", 401, 403, 403, 200, {"enabled": False}),
    Row("DELETE", "notification-channels/{channel}/", 401, 403, 403, 204),
]

# Expected status by OpenAPI operation label ("GET /api/v1/devices/{id}/") and role: the fuzzer spends fewer
# examples where the role is refused before the body is even read.
SCHEMA_PATH_PARAMETER = re.compile(r"\{(user|device_type|rule|event|channel|notification|ingest_key)\}")


def operation_label(row):
    path = API_PREFIX + row.path.split("?")[0]
    path = SCHEMA_PATH_PARAMETER.sub("{id}", path)
    if "/telemetry/" in path:
        path = path.replace("{device}", "{device_id}")
    return f"{row.method} {path.replace('{device}', '{id}')}"


EXPECTED_BY_OPERATION = {operation_label(row): {role: row.expected(role) for role in ROLES} for row in MATRIX}


@pytest.fixture
def matrix_world(world):
    world.bystander = UserFactory(username="bystander", role="viewer")
    # An unused channel, so that deleting it says something about roles, not about references.
    world.spare_channel = NotificationChannelFactory(name="spare channel")
    return world


def _url(row, world):
    ids = {
        "user": world.bystander.pk,
        "device_type": world.spare_device_type.pk,
        "device": world.spare_device.pk,
        "rule": world.rule.pk,
        "event": world.open_event.pk,
        "channel": world.spare_channel.pk,
        "notification": world.notification.pk,
        "ingest_key": world.ingest_key.pk,
    }
    if row.path.startswith("devices/{device}/telemetry"):
        ids["device"] = world.device.pk
    return API_PREFIX + row.path.format(**ids)


def _client(role, world):
    return APIClient(**HTTPS) if role == "anonymous" else client_for(world.users[role])


@pytest.mark.parametrize("row", MATRIX, ids=[row.label for row in MATRIX])
def test_each_role_gets_the_status_of_the_matrix(row, matrix_world):
    answered = {}
    for role in ROLES:
        with transaction.atomic():
            body = row.body(matrix_world) if callable(row.body) else row.body
            client = _client(role, matrix_world)
            response = client.generic(row.method, _url(row, matrix_world), **_json(body))
            answered[role] = response.status_code
            if response.status_code in (401, 403):
                assert_problem(response, response.status_code)
            transaction.set_rollback(True)
    assert answered == {role: row.expected(role) for role in ROLES}, response.content


def _json(body):
    if body is None:
        return {}
    return {"data": json.dumps(body), "content_type": "application/json"}


def _api_endpoints():
    """``(regex, methods)`` for every URL pattern under /api/v1/, with the methods its view serves."""

    def walk(patterns, prefix):
        for pattern in patterns:
            regex = prefix + pattern.pattern.regex.pattern.lstrip("^")
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, regex.rstrip("$").removesuffix("\\Z"))
            elif isinstance(pattern, URLPattern):
                yield regex, pattern.callback

    for regex, callback in walk(get_resolver().url_patterns, "/"):
        if not regex.startswith(API_PREFIX):
            continue
        actions = getattr(callback, "actions", None)
        if actions is not None:  # a viewset route
            methods = set(actions)
        else:
            view = callback.view_class
            methods = {method for method in view.http_method_names if hasattr(view, method)}
        # HEAD and OPTIONS come with GET and with every view; they are not endpoints of their own.
        yield re.compile(regex), {method.upper() for method in methods - {"head", "options"}}


def test_every_api_endpoint_and_method_is_in_the_matrix(matrix_world):
    urls = [(row.method, _url(row, matrix_world).split("?")[0]) for row in MATRIX]
    missing = []
    endpoints = list(_api_endpoints())
    for regex, methods in endpoints:
        for method in sorted(methods):
            if not any(row_method == method and regex.fullmatch(url) for row_method, url in urls):
                missing.append(f"{method} {regex.pattern}")
    assert missing == []
    assert len(endpoints) >= 20  # the walk found the API


def test_the_matrix_and_the_openapi_schema_name_the_same_operations(api_client):
    schema = api_client.get("/api/v1/schema/?format=json").json()
    operations = {f"{method.upper()} {path}" for path, item in schema["paths"].items() for method in item}
    # schema/ and docs/ serve the schema itself and are not operations in it.
    assert set(EXPECTED_BY_OPERATION) - {"GET /api/v1/schema/", "GET /api/v1/docs/"} == operations


# Django Admin's pages of the brute-force protection (the rest of Admin: tests/iothub/test_admin.py): admins see
# and clear lock-outs; every other caller is sent to the login page or refused, and sees no counter.
LOGIN_COUNTER_PAGES = [
    ("GET", "/admin/iothub/logincounter/"),
    ("GET", "/admin/iothub/logincounter/{counter}/change/"),
    ("POST", "/admin/iothub/logincounter/"),  # the "clear" action
]


@pytest.mark.parametrize(("method", "page"), LOGIN_COUNTER_PAGES, ids=[" ".join(row) for row in LOGIN_COUNTER_PAGES])
def test_only_admins_reach_the_login_counters_in_admin(method, page, matrix_world, client):
    login_attempt_begin(username="bystander", address="198.51.100.7")
    counter = LoginCounter.objects.get(username="bystander")
    url = page.format(counter=counter.pk)
    answered = {}
    for role in ROLES:
        with transaction.atomic():
            client.logout()
            if role != "anonymous":
                client.force_login(matrix_world.users[role])
            if method == "POST":
                response = client.post(url, {"action": "clear", "_selected_action": [counter.pk]}, secure=True)
            else:
                response = client.get(url, secure=True)
            answered[role] = (response.status_code, LoginCounter.objects.filter(pk=counter.pk).exists())
            if role != "admin":
                assert b"198.51.100.7" not in response.content
            transaction.set_rollback(True)
    refused = {(302, True), (403, True)}
    assert answered["admin"] == ((302, False) if method == "POST" else (200, True))
    assert {answered[role] for role in ROLES if role != "admin"} <= refused, answered


# Secrets: which roles read each field that may hold one. Webhook URLs carry tokens (path, query); email targets are
# addresses. Admins read channel targets whole; nobody reads a secret in a notification (never stored).
SECRET = "s3cret-token"
SECRET_FIELDS = [
    # (path, field, roles that read the secret)
    ("notification-channels/", "results/*/target", {"admin"}),
    ("notification-channels/{webhook}/", "target", {"admin"}),
    ("notification-channels/{email}/", "target", {"admin"}),
    (f"notification-channels/?search={SECRET}", "results/*/target", {"admin"}),
    ("notifications/", "results/*/request", set()),
    ("notifications/", "results/*/last_error", set()),
    ("notifications/{notification}/", "request", set()),
    ("notifications/{notification}/", "last_error", set()),
]


@pytest.fixture
def secrets_world(world, settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    webhook = NotificationChannelFactory(
        name="pager", kind="webhook", target=f"http://127.0.0.1:{closed_port}/T0KEN-PATH?token={SECRET}"
    )
    email = NotificationChannelFactory(name="on-call", kind="email", target=f"{SECRET}@example.com")
    RuleFactory(name="secret rule", channels=[webhook], dedupe=False)
    insert_readings(world.device, [(datetime.now(UTC), {"temperature": 99})])
    settings.NOTIFICATION_WEBHOOKS_ENABLED = True
    deliver_due_notifications()
    world.webhook, world.email = webhook, email
    world.secret_notification = Notification.objects.get(channel=webhook)
    assert world.secret_notification.last_error  # the closed port refused it
    return world


def _field_values(body, pointer):
    head, _, rest = pointer.partition("/")
    if head == "*":
        return [value for item in body for value in _field_values(item, rest)]
    return _field_values(body[head], rest) if rest else [body[head]]


@pytest.mark.parametrize(("path", "field", "readers"), SECRET_FIELDS, ids=[f"{p} {f}" for p, f, _ in SECRET_FIELDS])
def test_each_role_reads_secrets_only_where_allowed(secrets_world, path, field, readers):
    url = API_PREFIX + path.format(
        webhook=secrets_world.webhook.pk,
        email=secrets_world.email.pk,
        notification=secrets_world.secret_notification.pk,
    )
    read = set()
    for role in ("viewer", "operator", "admin"):
        response = client_for(secrets_world.users[role]).get(url)
        assert response.status_code == 200
        values = _field_values(response.json(), field)
        if path.startswith("notification-channels/") and "search" not in path:
            assert values, "the channel is listed for every role (only its target is masked)"
        if any(SECRET in json.dumps(value) for value in values):
            read.add(role)
    assert read == readers


def test_other_roles_see_targets_masked(secrets_world):
    viewer = client_for(secrets_world.users["viewer"])
    webhook = viewer.get(f"{API_PREFIX}notification-channels/{secrets_world.webhook.pk}/").json()
    email = viewer.get(f"{API_PREFIX}notification-channels/{secrets_world.email.pk}/").json()
    assert webhook["target"] == secrets_world.webhook.target.split("/T0KEN-PATH")[0] + "/…"
    assert email["target"] == "s***@example.com"
