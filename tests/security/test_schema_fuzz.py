"""Schema fuzzing: schemathesis generates requests from the API's own OpenAPI schema, for every operation, as each
role, and sends them to the real WSGI application over the real test database holding one of everything.

Each response must not be a server error, must conform to the schema (status, content type, body, headers), and
every error must be a problem document (``application/problem+json`` whose ``status`` is the response's). Half the
examples are schema-valid, half deliberately not (schemathesis' negative mode); for an operation with path
parameters or a body naming other objects (``device_id``, ``device_type``, ``channels``…), each example is also
replayed with the ids of real objects, so reads, writes, deletes and ingest reach them.

Every example runs in a savepoint rolled back afterwards: a DELETE can't starve the examples after it.
``FUZZ_EXAMPLES`` (default 10) bounds the examples per operation, role and mode (a quarter of it for a role the
operation refuses); generation is derandomized so a run is reproducible, and ``FUZZ_SEED`` picks another
reproducible sequence. ``FUZZ_STATS=<file>`` appends one line per request sent (role, operation, status): the
numbers in docs/reliability.md come from it.
"""

import os

import hypothesis
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis.specs.openapi import checks as openapi_checks

from iothub.api.problems import PROBLEM_CONTENT_TYPE
from tests.security.conftest import ROLES
from tests.security.test_role_matrix import EXPECTED_BY_OPERATION

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
SEED = os.environ.get("FUZZ_SEED")
# Requests arrive as they do behind the TLS proxy (plain HTTP is redirected), on an allowed host.
TRANSPORT_HEADERS = {"X-Forwarded-Proto": "https", "Host": "localhost"}

APPLICATION = WSGIHandler()
SCHEMA = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", APPLICATION, headers=TRANSPORT_HEADERS)
OPERATIONS = {result.ok().label: result.ok() for result in SCHEMA.get_all_operations()}


@pytest.fixture
def in_process_requests():
    """Django's WSGI handler closes the connection after each request; in a test, that connection holds the
    test's transaction. Django's test client unhooks the same signal handler for the same reason."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def problem_details(ctx, response, case):
    """Every error is a problem document for the status it came with."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type == PROBLEM_CONTENT_TYPE, f"{response.status_code} served as {content_type!r}"
    body = response.json()
    assert body["status"] == response.status_code, body
    assert isinstance(body["errors"], list), body
    return None


def refused_without_credentials(role):
    """An operation that declares security answers an anonymous caller 401 (or 404 for a path that routes
    nowhere), never with data or a validation error. An empty requirement among its alternatives (ingest's device
    key) makes the security optional."""

    def check(ctx, response, case):
        requirements = case.operation.definition.raw.get("security", [])
        secured = bool(requirements) and all(requirements)
        if role == "anonymous" and secured:
            assert response.status_code in (401, 404), f"anonymous caller answered {response.status_code}"
        return None

    return check


CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]


def _real_path_parameters(world, operation):
    """The path parameters of ``operation`` naming real objects of the world, or None without any."""
    names = {parameter.name for parameter in operation.path_parameters}
    if not names:
        return None
    path = operation.path
    if "device_id" in names:
        return {"device_id": str(world.device.pk)}
    objects = {
        "/api/v1/users/": world.users["viewer"].pk,
        "/api/v1/device-types/": world.spare_device_type.pk,
        "/api/v1/devices/": world.spare_device.pk,
        "/api/v1/rules/": world.rule.pk,
        "/api/v1/events/": world.open_event.pk,
        "/api/v1/notification-channels/": world.channel.pk,
        "/api/v1/notifications/": world.notification.pk,
        "/api/v1/ingest-keys/": world.ingest_key.pk,
    }
    for prefix, pk in objects.items():
        if path.startswith(prefix):
            return {"id": str(pk)}
    raise AssertionError(f"no real object for {path}: add one to the world")


def _real_references(world):
    """Body fields that name other objects, with ids of real ones: a generated UUID names no device."""
    return {
        "device_id": str(world.device.pk),
        "device": str(world.device.pk),
        "device_type": world.device_type.pk,
        "channels": [world.channel.pk],
    }


def _with_real_references(body, references):
    """``body`` (an object, or an array of objects for ingest) with its reference fields pointing at real objects;
    None when it has none."""
    if isinstance(body, dict) and references.keys() & body.keys():
        return {**body, **{name: value for name, value in references.items() if name in body}}
    if isinstance(body, list) and any(isinstance(item, dict) and references.keys() & item.keys() for item in body):
        return [_with_real_references(item, references) or item for item in body]
    return None


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_fuzz(label, role, world, in_process_requests):
    operation = OPERATIONS[label]
    headers = dict(TRANSPORT_HEADERS)
    if role != "anonymous":
        headers["Authorization"] = f"Bearer {RefreshToken.for_user(world.users[role]).access_token}"
    real_ids = _real_path_parameters(world, operation)
    references = _real_references(world)
    checks = CHECKS
    extra = [problem_details, refused_without_credentials(role)]

    def send(case):
        # A savepoint per request: whatever the request changed, the next one sees the same world.
        with transaction.atomic():
            response = case.call(headers=headers)
            if os.environ.get("FUZZ_STATS"):
                with open(os.environ["FUZZ_STATS"], "a") as log:
                    log.write(f"{role}\t{label}\t{response.status_code}\n")
            case.validate_response(
                response, checks=checks, additional_checks=extra, headers=headers, transport_kwargs={}
            )
            transaction.set_rollback(True)

    # A role refused before the body is read (the role matrix says so) gets a quarter of the examples.
    refused = EXPECTED_BY_OPERATION[label][role] in (401, 403)
    examples = max(2, EXAMPLES // 4) if refused else EXAMPLES
    strategy = operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE) | operation.as_strategy(
        generation_mode=schemathesis.GenerationMode.NEGATIVE
    )

    @hypothesis.settings(
        max_examples=examples * 2,
        deadline=None,
        derandomize=SEED is None,
        database=None,
        phases=[hypothesis.Phase.generate, hypothesis.Phase.shrink],
        suppress_health_check=list(hypothesis.HealthCheck),
        print_blob=False,
    )
    @hypothesis.given(case=strategy)
    def fuzz(case):
        send(case)
        body = _with_real_references(case.body, references) if isinstance(case.body, dict | list) else None
        if real_ids is not None or body is not None:
            if real_ids is not None:
                case.path_parameters = {**case.path_parameters, **real_ids}
            if body is not None:
                case.body = body
            send(case)

    if SEED is not None:
        fuzz = hypothesis.seed(int(SEED))(fuzz)
    fuzz()
