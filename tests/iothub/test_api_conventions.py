"""The conventions every endpoint shares: versioned paths, snake_case, pagination and problem details."""

import re

import pytest
from django.db import connection
from django.urls import path
from rest_framework.test import APIClient

from iothub.models import User
from tests.conftest import HTTPS, assert_problem

pytestmark = pytest.mark.django_db

USERS_URL = "/api/v1/users/"
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def _boom(request):
    raise RuntimeError("unexpected failure")


# The urlconf of the failure test: one failing route, the project's error handlers.
urlpatterns = [path("api/v1/boom/", _boom)]
handler500 = "iothub.views.handler500"


@pytest.fixture
def many_users(db):
    User.objects.bulk_create(User(username=f"bulk{i:04d}") for i in range(520))


class TestPagination:
    def test_default_page_is_50_with_count_and_links(self, admin_client, many_users):
        body = admin_client.get(USERS_URL).json()
        assert set(body) == {"count", "next", "previous", "results"}
        assert body["count"] == 521  # plus the admin
        assert len(body["results"]) == 50
        assert body["previous"] is None
        assert body["next"].startswith("https://testserver/api/v1/users/?page=2")

    def test_page_size_is_honoured_and_pages_walk_every_row_once(self, admin_client, many_users):
        seen, url = [], f"{USERS_URL}?page_size=200"
        while url:
            body = admin_client.get(url).json()
            assert len(body["results"]) <= 200
            seen += [user["id"] for user in body["results"]]
            url = body["next"]
        assert len(seen) == len(set(seen)) == 521

    def test_page_size_is_clamped_to_500(self, admin_client, many_users):
        assert len(admin_client.get(USERS_URL, {"page_size": 10_000}).json()["results"]) == 500

    @pytest.mark.parametrize(("parameter", "value"), [("page_size", "0"), ("page_size", "ten"), ("page", "-1")])
    def test_invalid_paging_parameters_are_400_problems_naming_the_parameter(self, admin_client, parameter, value):
        body = assert_problem(admin_client.get(USERS_URL, {parameter: value}), 400, "invalid_parameter")
        assert body["errors"][0]["parameter"] == parameter
        assert "pointer" not in body["errors"][0]

    def test_a_page_past_the_end_is_a_404_problem(self, admin_client):
        assert_problem(admin_client.get(USERS_URL, {"page": 99}), 404, "not_found")

    def test_invalid_filter_values_name_the_parameter(self, admin_client):
        body = assert_problem(admin_client.get(USERS_URL, {"role": "root"}), 400, "invalid_parameter")
        assert body["errors"][0]["parameter"] == "role"


class TestProblemDetails:
    def test_validation_errors_point_into_the_body(self, admin_client):
        body = assert_problem(admin_client.post(USERS_URL, {"username": "", "role": "nope"}), 400, "invalid")
        pointers = {error["pointer"] for error in body["errors"]}
        assert {"/username", "/role", "/password"} <= pointers
        assert body["title"] == "Bad Request"
        assert "problems" in body["detail"]

    def test_malformed_json_is_a_400_problem(self, admin_client):
        response = admin_client.post(USERS_URL, data='{"username": ', content_type="application/json")
        assert_problem(response, 400, "parse_error")

    @pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
    def test_non_standard_json_numbers_are_refused(self, admin_client, literal):
        response = admin_client.post(USERS_URL, data=f'{{"username": {literal}}}', content_type="application/json")
        assert_problem(response, 400, "parse_error")

    def test_a_body_over_one_mebibyte_is_a_413_problem(self, admin_client):
        payload = '{"username": "' + "x" * (1024 * 1024) + '"}'
        response = admin_client.post(USERS_URL, data=payload, content_type="application/json")
        assert_problem(response, 413, "payload_too_large")
        assert not User.objects.filter(username__startswith="xxx").exists()

    def test_an_unsupported_content_type_is_a_415_problem(self, admin_client):
        response = admin_client.post(USERS_URL, data="username=x", content_type="application/x-www-form-urlencoded")
        assert_problem(response, 415, "unsupported_media_type")

    def test_an_unsupported_method_is_a_405_problem(self, admin_client):
        response = admin_client.put(USERS_URL, {})
        assert_problem(response, 405, "method_not_allowed")
        assert "GET" in response["Allow"]

    def test_an_unknown_object_is_a_404_problem(self, admin_client):
        assert_problem(admin_client.get(f"{USERS_URL}999999/"), 404, "not_found")

    def test_an_unknown_api_path_is_a_404_problem_from_django(self, api_client):
        body = assert_problem(api_client.get("/api/v1/no-such-thing/"), 404, "not_found")
        assert "/api/v1/no-such-thing/" in body["detail"]

    def test_outside_the_api_django_keeps_its_html_404(self, api_client):
        response = api_client.get("/no-such-page/")
        assert response.status_code == 404
        assert response["Content-Type"].startswith("text/html")

    @pytest.mark.urls(__name__)
    def test_an_unexpected_error_is_a_500_problem(self):
        client = APIClient(raise_request_exception=False, **HTTPS)
        body = assert_problem(client.get("/api/v1/boom/"), 500, "server_error")
        assert "unexpected failure" not in body["detail"]  # no internals leak

    @pytest.mark.django_db(transaction=True)
    def test_a_database_outage_is_a_503_problem(self, admin_client):
        settings_dict = connection.settings_dict
        port = settings_dict["PORT"]
        connection.close()
        settings_dict["PORT"] = "1"  # nothing listens there: every connection attempt fails
        try:
            response = admin_client.get(USERS_URL)
        finally:
            connection.close()
            settings_dict["PORT"] = port
        assert_problem(response, 503, "database_unavailable")


class TestSchema:
    @pytest.fixture
    def schema(self, api_client):
        response = api_client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
        assert response.status_code == 200
        return response.json()

    def test_every_path_is_versioned(self, schema):
        assert schema["paths"]
        assert all(route.startswith("/api/v1/") for route in schema["paths"])

    def test_every_property_is_snake_case(self, schema):
        def property_names(node):
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "properties":
                        yield from value
                    yield from property_names(value)
            elif isinstance(node, list):
                for item in node:
                    yield from property_names(item)

        names = set(property_names(schema))
        assert names
        assert {name for name in names if not SNAKE_CASE.match(name)} == set()

    def test_swagger_ui_is_served_without_a_cdn(self, api_client):
        page = api_client.get("/api/v1/docs/")
        assert page.status_code == 200
        html = page.content.decode()
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets
        assert not [asset for asset in assets if re.match(r"^(https?:)?//", asset)]
        scripts = [asset for asset in assets if asset.endswith(".js")]
        assert scripts
        for asset in scripts:
            assert api_client.get(asset).status_code == 200, asset


def test_the_site_root_leads_to_the_api_docs(api_client):
    # `/` was a 404: the address make run prints, and Admin's "View site" link, led nowhere.
    response = api_client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/api/v1/docs/"
    assert api_client.get(response["Location"]).status_code == 200
