"""Strict metrics: a device type that opts in refuses readings carrying a metric it does not declare (ingest, the
device-types API, Admin, the database constraint). Types without it accept any metric (tests/telemetry/test_ingest.py).
"""

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.db import IntegrityError, connection, transaction

from iothub.models import Role
from telemetry.ingest.services import InvalidReadings, reading_ingest
from telemetry.models import STRICT_WITHOUT_METRICS, DeviceType, Telemetry
from tests.conftest import assert_problem
from tests.factories import PASSWORD, DeviceFactory, DeviceTypeFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/telemetry/ingest/"
THERMOMETER = [{"name": "temperature", "unit": "°C"}, {"name": "humidity", "unit": "%"}, {"name": "position"}]


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


NOW = datetime.now(UTC).replace(microsecond=0)


def reading(device, seconds_ago=60, **metrics):
    return {"device_id": str(device.id), "timestamp": iso(NOW - timedelta(seconds=seconds_ago)), "metrics": metrics}


def post(client, payload):
    return client.post(URL, data=orjson.dumps(payload), content_type="application/json")


@pytest.fixture
def strict():
    return DeviceFactory(device_type=DeviceTypeFactory(name="thermometer", metrics=THERMOMETER, strict_metrics=True))


def request_count(device):
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(requests), 0) FROM ingest_request_counts WHERE device_id = %s", [device.id])
        return cursor.fetchone()[0]


class TestIngest:
    def test_declared_metrics_are_stored_nested_objects_whole(self, api_client, strict):
        response = post(api_client, reading(strict, temperature=21.5, humidity=40, position={"lat": 1, "any": 2}))
        assert response.status_code == 201, response.content
        assert Telemetry.objects.get().metrics["position"] == {"lat": 1, "any": 2}

    def test_an_undeclared_metric_refuses_the_reading_naming_it(self, api_client, strict):
        response = post(api_client, reading(strict, temperature=21.5, temprature=21.5))
        body = assert_problem(response, 400, "invalid")
        [error] = body["errors"]
        assert (error["pointer"], error["code"]) == ("/metrics/temprature", "undeclared_metric")
        assert error["detail"] == (
            'The device type "thermometer" has strict metrics and declares no metric "temprature": it declares '
            "humidity, position, temperature. Declare the metric on the type, or turn strict metrics off."
        )
        assert not Telemetry.objects.exists()
        assert request_count(strict) == 0  # a refused request counts nothing against the rate

    def test_one_undeclared_metric_refuses_the_whole_batch_each_named(self, api_client, strict):
        relaxed = DeviceFactory()  # a type without strict metrics: anything goes
        batch = [
            reading(strict, 1, temperature=1),
            reading(relaxed, 1, anything=1),
            reading(strict, 2, voltage=3, temperature=2, current=4),
            reading(strict, 3, humidity=5),
        ]
        body = assert_problem(post(api_client, batch), 400, "invalid")
        assert [(error["pointer"], error["code"]) for error in body["errors"]] == [
            ("/2/metrics/voltage", "undeclared_metric"),
            ("/2/metrics/current", "undeclared_metric"),
        ]
        assert not Telemetry.objects.exists()
        assert post(api_client, [batch[0], batch[1], batch[3]]).status_code == 201
        assert Telemetry.objects.count() == 3

    def test_listed_with_the_other_problems_of_an_invalid_body(self, api_client, strict):
        batch = [reading(strict, 1, temperature=1, volts=2), {**reading(strict, 2, temperature=1), "timestamp": "x"}]
        body = assert_problem(post(api_client, batch), 400, "invalid")
        assert [(error["pointer"], error["code"]) for error in body["errors"]] == [
            ("/0/metrics/volts", "undeclared_metric"),
            ("/1/timestamp", "invalid"),
        ]

    def test_an_undeclared_metric_is_not_merged_into_a_stored_reading(self, api_client, strict):
        assert post(api_client, reading(strict, temperature=20)).status_code == 201
        refused = post(api_client, reading(strict, temperature=20, pressure=1013))
        assert [error["pointer"] for error in assert_problem(refused, 400, "invalid")["errors"]] == [
            "/metrics/pressure"
        ]
        merged = post(api_client, reading(strict, temperature=20, humidity=50))
        assert (merged.status_code, merged.json()) == (201, {"accepted": 0, "merged": 1, "duplicates": 0})
        assert Telemetry.objects.get().metrics == {"temperature": 20, "humidity": 50}

    def test_the_statement_itself_refuses_it(self, strict):
        """The service's INSERT refuses an undeclared metric with no Python check before it: the check is the
        statement's (the problems are looked up after the refusal)."""
        with pytest.raises(InvalidReadings) as refused:
            reading_ingest(payload=[reading(strict, 1, temperature=1), reading(strict, 2, dew_point=3)])
        assert [(error["pointer"], error["code"]) for error in refused.value.errors] == [
            ("/1/metrics/dew_point", "undeclared_metric")
        ]
        assert not Telemetry.objects.exists()

    def test_turning_strict_off_or_declaring_the_metric_lets_it_in(self, api_client, strict):
        device_type = strict.device_type
        assert post(api_client, reading(strict, 1, pressure=1)).status_code == 400
        device_type.metrics = [*THERMOMETER, {"name": "pressure", "unit": "hPa"}]
        device_type.save()
        assert post(api_client, reading(strict, 1, pressure=1)).status_code == 201
        assert post(api_client, reading(strict, 2, wind=1)).status_code == 400
        device_type.strict_metrics = False
        device_type.save()
        assert post(api_client, reading(strict, 2, wind=1)).status_code == 201

    def test_a_metric_removed_from_the_declaration_is_refused_from_then_on(self, api_client, strict):
        assert post(api_client, reading(strict, 1, humidity=1)).status_code == 201
        DeviceType.objects.filter(pk=strict.device_type_id).update(metrics=THERMOMETER[:1])
        assert post(api_client, reading(strict, 2, humidity=1)).status_code == 400
        assert Telemetry.objects.count() == 1


class TestDeviceTypes:
    def test_the_api_sets_and_shows_strict_metrics(self, admin_client):
        created = admin_client.post(
            "/api/v1/device-types/",
            {"name": "meter", "metrics": [{"name": "kwh"}], "strict_metrics": True},
            format="json",
        )
        assert created.status_code == 201, created.content
        assert created.json()["strict_metrics"] is True
        default = admin_client.post("/api/v1/device-types/", {"name": "other"}, format="json")
        assert default.json()["strict_metrics"] is False

    @pytest.mark.parametrize(
        ("stored", "change", "pointer"),
        [
            ({"metrics": []}, {"strict_metrics": True}, "/strict_metrics"),
            ({"metrics": [{"name": "kwh"}], "strict_metrics": True}, {"metrics": []}, "/metrics"),
        ],
    )
    def test_strict_without_declared_metrics_is_refused(self, admin_client, stored, change, pointer):
        device_type = DeviceTypeFactory(name="meter", **stored)
        response = admin_client.patch(f"/api/v1/device-types/{device_type.pk}/", change, format="json")
        body = assert_problem(response, 400, "invalid")
        assert [(error["pointer"], error["detail"]) for error in body["errors"]] == [(pointer, STRICT_WITHOUT_METRICS)]
        device_type.refresh_from_db()
        assert (device_type.metrics, device_type.strict_metrics) == (
            stored["metrics"],
            stored.get("strict_metrics", False),
        )
        created = admin_client.post("/api/v1/device-types/", {"name": "new", "strict_metrics": True}, format="json")
        assert_problem(created, 400, "invalid")
        assert not DeviceType.objects.filter(name="new").exists()

    def test_the_database_refuses_it_too(self):
        statement = (
            "INSERT INTO device_types (name, description, metrics, strict_metrics, updated_at)"
            " VALUES ('x', '', '[]', true, now())"
        )
        with (
            pytest.raises(IntegrityError, match="device_types_strict_metrics_declared"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)

    def test_admin_sets_it_and_explains_a_refusal(self, client):
        UserFactory(username="boss", role=Role.ADMIN)
        assert client.login(username="boss", password=PASSWORD)
        device_type = DeviceTypeFactory(name="meter")
        url = f"/admin/telemetry/devicetype/{device_type.pk}/change/"
        assert (
            "Refuse readings that carry a metric this type does not declare"
            in client.get(url, secure=True).content.decode()
        )
        form = {"name": "meter", "description": "", "strict_metrics": "on"}
        refused = client.post(url, {**form, "metrics": "[]"}, secure=True)
        assert refused.status_code == 200
        assert STRICT_WITHOUT_METRICS in refused.content.decode()
        assert not DeviceType.objects.get(pk=device_type.pk).strict_metrics
        saved = client.post(url, {**form, "metrics": '[{"name": "kwh"}]'}, secure=True)
        assert saved.status_code == 302
        assert DeviceType.objects.get(pk=device_type.pk).strict_metrics
        listing = client.get("/admin/telemetry/devicetype/", secure=True).content.decode()
        assert "column-strict_metrics" in listing
