"""An API that says what it does: every operation refuses query parameters it doesn't take (a 400 problem naming
them) and accepts every one it documents; every operation has a summary and Markdown descriptions; a 403 names the
roles that may. The walks go over the role matrix (every endpoint and method) and the OpenAPI schema."""

import json

import django_filters
import pytest
from django.db import transaction

from iothub.models import User
from rules.filtersets import RuleFilterSet
from tests.conftest import assert_problem, client_for
from tests.security.test_role_matrix import MATRIX, _json, _url, matrix_world  # noqa: F401

pytestmark = pytest.mark.django_db

UNKNOWN = "no_such_parameter"


@pytest.fixture
def schema(api_client):
    return api_client.get("/api/v1/schema/?format=json").json()


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _with_parameter(url, name, value="1"):
    return f"{url}{'&' if '?' in url else '?'}{name}={value}"


def assert_unknown(response, *names):
    body = assert_problem(response, 400, "invalid_parameter")
    assert sorted(error["parameter"] for error in body["errors"]) == sorted(names), body
    assert {error["code"] for error in body["errors"]} == {"unknown_parameter"}
    return body


@pytest.mark.parametrize("row", MATRIX, ids=[row.label for row in MATRIX])
def test_every_endpoint_refuses_an_unknown_query_parameter(row, matrix_world):  # noqa: F811
    """As an admin, with a valid body and real objects: only the unknown parameter is wrong."""
    with transaction.atomic():
        body = row.body(matrix_world) if callable(row.body) else row.body
        client = client_for(matrix_world.users["admin"])
        users_before = User.objects.count()
        response = client.generic(row.method, _with_parameter(_url(row, matrix_world), UNKNOWN), **_json(body))
        assert_unknown(response, UNKNOWN)
        assert User.objects.count() == users_before  # refused before the write
        transaction.set_rollback(True)


def test_the_problem_lists_what_the_endpoint_takes(admin_client):
    body = assert_unknown(
        admin_client.get("/api/v1/devices/", {"location": "Building A", "name": "x"}), "location", "name"
    )
    detail = body["errors"][0]["detail"]
    assert "device_type, ordering, page, page_size, search, status" in detail


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/api/v1/devices/", "serial_number"),
        ("/api/v1/events/", "message"),
        ("/api/v1/notifications/", "search"),  # no search fields: it used to be ignored
        ("/api/v1/device-types/1/", "search"),  # filters and pages apply to lists only
        ("/api/v1/me/", "format"),  # one format only
    ],
)
def test_parameters_an_endpoint_does_not_take(admin_client, url, parameter):
    assert_unknown(admin_client.get(url, {parameter: "x"}), parameter)


def test_page_is_refused_on_the_cursor_paginated_readings(admin_client, matrix_world):  # noqa: F811
    url = f"/api/v1/devices/{matrix_world.device.pk}/telemetry/"
    assert_unknown(admin_client.get(url, {"page": "2"}), "page")
    assert admin_client.get(url, {"page_size": "2"}).status_code == 200


def test_a_filter_added_to_a_filterset_is_accepted_at_once(admin_client, monkeypatch):
    """The allowed parameters derive from the view's declarations: nothing else to keep in step."""
    assert_unknown(admin_client.get("/api/v1/rules/", {"label": "x"}), "label")
    monkeypatch.setitem(RuleFilterSet.base_filters, "label", django_filters.CharFilter(field_name="name"))
    assert admin_client.get("/api/v1/rules/", {"label": "x"}).status_code == 200


def test_every_documented_query_parameter_is_accepted(schema, admin_client, matrix_world):  # noqa: F811
    world_ids = {"id": None, "device_id": matrix_world.device.pk}
    checked = 0
    for method, path, operation in _operations(schema):
        if method != "GET":
            continue
        ids = {**world_ids, "id": _an_id(path, matrix_world)}
        url = path.format(**ids)
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query":
                continue
            response = admin_client.get(url, {parameter["name"]: _a_value(parameter)})
            if response.streaming:
                response.close()  # a CSV export: ends its transaction, a savepoint in the test's
            if response.status_code == 400:
                errors = response.json()["errors"]
                assert all(error.get("code") != "unknown_parameter" for error in errors), (path, parameter["name"])
            checked += 1
    assert checked > 40


def _an_id(path, world):
    objects = {
        "/api/v1/users/": world.bystander,
        "/api/v1/device-types/": world.device_type,
        "/api/v1/devices/": world.device,
        "/api/v1/rules/": world.rule,
        "/api/v1/events/": world.open_event,
        "/api/v1/notifications/": world.notification,
        "/api/v1/notification-channels/": world.spare_channel,
    }
    return next((obj.pk for prefix, obj in objects.items() if path.startswith(prefix)), None)


def _a_value(parameter):
    schema = parameter.get("schema", {})
    schema = schema.get("items", schema)
    if "enum" in schema:
        return schema["enum"][0]
    return {"integer": "1", "boolean": "true"}.get(schema.get("type"), "x")


def test_every_operation_has_a_summary_and_markdown_descriptions(schema):
    summaries = []
    for method, path, operation in _operations(schema):
        summary = operation.get("summary", "")
        assert summary, f"{method} {path} has no summary"
        assert len(summary) <= 80, summary
        summaries.append(summary)
    assert len(set(summaries)) == len(summaries)  # each says which operation it is
    assert "``" not in json.dumps(schema)  # reST literals, shown verbatim by Markdown


def test_cursor_and_page_size_are_documented_on_every_paginated_list(schema):
    for method, path, operation in _operations(schema):
        names = {parameter["name"] for parameter in operation.get("parameters", []) if parameter["in"] == "query"}
        if path == "/api/v1/devices/{device_id}/telemetry/":
            assert {"cursor", "page_size"} <= names
            assert "page" not in names
        elif method == "GET" and "results" in json.dumps(operation["responses"]["200"]) and path.endswith("s/"):
            assert {"page", "page_size"} <= names, path
        for parameter in operation.get("parameters", []):
            if parameter["name"] in ("cursor", "page", "page_size"):
                assert parameter["description"], (path, parameter["name"])


@pytest.mark.parametrize(
    ("role", "method", "url", "roles"),
    [
        ("viewer", "post", "/api/v1/devices/", ["admin", "operator"]),
        ("operator", "get", "/api/v1/users/", ["admin"]),
        ("operator", "post", "/api/v1/rules/", ["admin"]),
    ],
)
def test_a_403_names_the_roles_that_may(matrix_world, role, method, url, roles):  # noqa: F811
    response = getattr(client_for(matrix_world.users[role]), method)(url, {}, format="json")
    body = assert_problem(response, 403, "permission_denied")
    assert body["required_roles"] == roles
    assert " or ".join(roles) in body["detail"]
    assert f"you are {role}" in body["detail"]
