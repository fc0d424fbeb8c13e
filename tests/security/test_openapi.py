"""The OpenAPI schema tells the truth about errors: valid OpenAPI 3, and every operation documents the problem
responses it can return, as ``application/problem+json`` (iothub/api/schema.py). The fuzzer then holds the server
to it (test_schema_fuzz.py)."""

import pytest
from drf_spectacular.validation import validate_schema

from tests.security.test_role_matrix import EXPECTED_BY_OPERATION

pytestmark = pytest.mark.django_db

PROBLEM_REF = "#/components/schemas/Problem"


@pytest.fixture
def schema(api_client):
    response = api_client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def test_the_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.0")
    validate_schema(schema)  # the OpenAPI Initiative's JSON schema of OpenAPI 3.0, bundled with drf-spectacular


def test_the_problem_component_has_the_members_of_every_error(schema):
    components = schema["components"]["schemas"]
    problem = components["Problem"]
    assert problem["required"] == ["type", "title", "status", "detail", "code", "errors"]
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/ProblemError"}
    error = components["ProblemError"]
    assert error["oneOf"] == [{"required": ["pointer"]}, {"required": ["parameter"]}]


def test_every_error_response_is_a_problem_document(schema):
    for label, operation in _operations(schema):
        errors = {status: response for status, response in operation["responses"].items() if status[0] in "45"}
        assert {"500", "503"} <= errors.keys(), label
        for status, response in errors.items():
            assert list(response["content"]) == ["application/problem+json"], (label, status)
            assert response["description"], (label, status)
            if label == "GET /api/v1/health/" and status == "503":
                assert response["content"]["application/problem+json"]["schema"]["$ref"].endswith("/HealthProblem")
            else:
                assert response["content"]["application/problem+json"]["schema"] == {"$ref": PROBLEM_REF}


def test_success_responses_are_never_problems(schema):
    for label, operation in _operations(schema):
        successes = [response for status, response in operation["responses"].items() if status[0] == "2"]
        assert len(successes) == 1, label
        assert "application/problem+json" not in successes[0].get("content", {}), label


def test_401_and_403_follow_the_role_matrix(schema):
    """An operation documents 401 when some caller gets it, and 403 when some role is refused."""
    for label, operation in _operations(schema):
        expected = set(EXPECTED_BY_OPERATION[label].values())
        documented = operation["responses"].keys()
        # The token endpoints refuse credentials, ingest refuses a request without a keyed device's key: 401s
        # whatever the caller's role.
        credentials_checked = label.startswith("POST /api/v1/auth/") or label == "POST /api/v1/telemetry/ingest/"
        assert ("401" in documented) == (401 in expected or credentials_checked), label
        assert ("403" in documented) == (403 in expected), label


@pytest.mark.parametrize(
    ("label", "statuses"),
    [
        ("POST /api/v1/telemetry/ingest/", {"201", "400", "401", "409", "413", "415", "429", "500", "503"}),
        ("POST /api/v1/auth/token/", {"200", "400", "401", "413", "415", "429", "500", "503"}),
        ("POST /api/v1/auth/logout/", {"204", "400", "401", "413", "415", "500", "503"}),
        ("GET /api/v1/devices/", {"200", "400", "401", "404", "500", "503"}),
        ("GET /api/v1/devices/{id}/", {"200", "401", "404", "500", "503"}),
        ("DELETE /api/v1/device-types/{id}/", {"204", "401", "403", "404", "409", "500", "503"}),
        (
            "POST /api/v1/events/{id}/acknowledge/",
            {"200", "400", "401", "403", "404", "409", "413", "415", "500", "503"},
        ),
        ("GET /api/v1/health/", {"200", "500", "503"}),
        ("GET /api/v1/me/", {"200", "401", "500", "503"}),
    ],
)
def test_operations_document_the_statuses_they_can_return(schema, label, statuses):
    assert set(dict(_operations(schema))[label]["responses"]) == statuses


def test_the_ingest_body_is_one_reading_or_a_batch(schema):
    body = dict(_operations(schema))["POST /api/v1/telemetry/ingest/"]["requestBody"]
    reading, batch = body["content"]["application/json"]["schema"]["oneOf"]
    assert reading["required"] == ["device_id", "timestamp", "metrics"]
    assert reading["additionalProperties"] is False
    assert (batch["type"], batch["minItems"], batch["maxItems"]) == ("array", 1, 1000)
    assert batch["items"] == reading


def test_the_ingest_answer_counts_accepted_merged_and_duplicate_readings(schema):
    operation = dict(_operations(schema))["POST /api/v1/telemetry/ingest/"]
    answer = operation["responses"]["201"]["content"]["application/json"]["schema"]
    assert answer["required"] == ["accepted", "merged", "duplicates"]
    assert set(answer["properties"]) == {"accepted", "merged", "duplicates"}
    assert "reading_conflict" in operation["responses"]["409"]["description"]
    assert "merged" in operation["description"]


def test_raw_telemetry_is_documented_as_a_cursor_page(schema):
    ok = dict(_operations(schema))["GET /api/v1/devices/{device_id}/telemetry/"]["responses"]["200"]
    page = schema["components"]["schemas"][ok["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(page["properties"]) == {"next", "previous", "results"}


@pytest.mark.parametrize(
    ("component", "field"),
    [("Device", "last_seen_at"), ("Event", "acknowledged_by"), ("Event", "resolved_by")],
)
def test_fields_that_can_be_null_are_documented_nullable(schema, component, field):
    """Found by the fuzzer: a new device has not been seen, an open event was acknowledged and resolved by no one."""
    assert schema["components"]["schemas"][component]["properties"][field]["nullable"] is True
