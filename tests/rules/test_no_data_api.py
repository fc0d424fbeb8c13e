"""No-data rules and the declared-metric check through the API and Admin (issue 14; issue 15, item 4): fields by
kind, 400 problems naming the field, the kind filter, the rule form an admin understands."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import DatabaseError, connection, transaction

from iothub.api.exception_handler import problem_exception_handler
from iothub.models import Role
from rules.models import DEFAULT_NO_DATA_MESSAGE_TEMPLATE, Event, Rule, RuleChannel
from rules.services import no_data_rules_evaluate
from tests.conftest import assert_problem
from tests.factories import (
    PASSWORD,
    DeviceFactory,
    DeviceTypeFactory,
    NotificationChannelFactory,
    RuleFactory,
    UserFactory,
)

from .conftest import insert_readings

pytestmark = pytest.mark.django_db

RULES = "/api/v1/rules/"
NO_DATA = {"name": "silent", "kind": "no_data", "metric": "temperature", "no_data_seconds": 300}
THRESHOLD = {"name": "too hot", "metric": "temperature", "operator": "gt", "threshold": 30}
HTTPS = {"secure": True}


@pytest.fixture
def thermometer():
    return DeviceTypeFactory(name="thermometer", metrics=[{"name": "temperature", "unit": "°C"}, {"name": "battery"}])


def test_an_admin_creates_a_no_data_rule_that_fires_and_resolves(admin_client, thermometer):
    channel = NotificationChannelFactory()
    body = admin_client.post(
        RULES, {**NO_DATA, "device_type": thermometer.pk, "channels": [channel.pk]}, format="json"
    ).json()
    assert (body["kind"], body["no_data_seconds"], body["operator"], body["threshold"]) == ("no_data", 300, None, None)
    assert body["message_template"] == DEFAULT_NO_DATA_MESSAGE_TEMPLATE
    device = DeviceFactory(device_type=thermometer, name="boiler")
    device.refresh_from_db()
    assert no_data_rules_evaluate(at=device.status_changed_at + timedelta(seconds=300)).events_opened == 1
    event = admin_client.get("/api/v1/events/", {"rule": body["id"]}).json()["results"][0]
    assert event["message"] == "boiler: silent for 5m (temperature; last seen never)"
    assert event["status"] == "open"
    insert_readings([(device.pk, device.status_changed_at + timedelta(seconds=301), {"temperature": 20})])
    assert admin_client.get(f"/api/v1/events/{event['id']}/").json()["status"] == "resolved"


def test_a_no_data_rule_may_watch_any_reading(admin_client, thermometer):
    response = admin_client.post(RULES, {**NO_DATA, "metric": None, "device_type": thermometer.pk}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["metric"] is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"no_data_seconds": None}, "no_data_seconds"),
        ({"no_data_seconds": 0}, "no_data_seconds"),
        ({"operator": "gt"}, "operator"),
        ({"threshold": 5}, "threshold"),
        ({"for_seconds": 60}, "for_seconds"),
        ({"max_gap_seconds": 60}, "max_gap_seconds"),
        ({"clear_threshold": 5}, "clear_threshold"),
        ({"auto_resolve": True}, "auto_resolve"),
        ({"message_template": "{device_name}: {value}"}, "message_template"),
    ],
)
def test_a_no_data_rule_refuses_the_fields_of_threshold_rules(admin_client, change, field):
    body = assert_problem(admin_client.post(RULES, {**NO_DATA, **change}, format="json"), 400)
    assert f"/{field}" in {error["pointer"] for error in body["errors"]}
    assert not Rule.objects.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"no_data_seconds": 300}, "no_data_seconds"),
        ({"operator": None}, "operator"),
        ({"metric": None}, "metric"),
        ({"message_template": "{device_name} {silent_for}"}, "message_template"),
    ],
)
def test_a_threshold_rule_refuses_no_data_seconds_and_needs_its_fields(admin_client, change, field):
    body = assert_problem(admin_client.post(RULES, {**THRESHOLD, **change}, format="json"), 400)
    assert f"/{field}" in {error["pointer"] for error in body["errors"]}
    assert not Rule.objects.exists()


def test_switching_a_rule_to_no_data_takes_the_kinds_default_message(admin_client):
    rule = RuleFactory()
    response = admin_client.patch(
        f"{RULES}{rule.pk}/",
        {"kind": "no_data", "operator": None, "threshold": None, "no_data_seconds": 60},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["message_template"] == DEFAULT_NO_DATA_MESSAGE_TEMPLATE


def test_rules_filter_on_kind(viewer_client):
    RuleFactory(name="hot")
    RuleFactory(name="quiet", kind="no_data", operator=None, threshold=None, no_data_seconds=60)
    assert [r["name"] for r in viewer_client.get(RULES, {"kind": "no_data"}).json()["results"]] == ["quiet"]
    assert [r["name"] for r in viewer_client.get(RULES, {"kind": "threshold"}).json()["results"]] == ["hot"]
    assert_problem(viewer_client.get(RULES, {"kind": "sometimes"}), 400)


# Declared metrics (issue 15, item 4) ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["device_type", "device"])
def test_a_rule_for_a_device_or_type_must_name_a_declared_metric(admin_client, thermometer, target):
    device = DeviceFactory(device_type=thermometer)
    value = thermometer.pk if target == "device_type" else str(device.pk)
    body = assert_problem(
        admin_client.post(RULES, {**THRESHOLD, "metric": "temprature", target: value}, format="json"), 400
    )
    assert body["errors"] == [
        {
            "pointer": "/metric",
            "detail": "The device type thermometer declares no metric 'temprature': use one of battery, temperature "
            "(or declare it on the type first).",
            "code": "invalid",
        }
    ]
    assert admin_client.post(RULES, {**THRESHOLD, target: value}, format="json").status_code == 201


def test_a_type_declaring_nothing_says_so_and_a_rule_for_every_device_names_any_metric(admin_client):
    bare = DeviceTypeFactory(name="bare")
    body = assert_problem(admin_client.post(RULES, {**THRESHOLD, "device_type": bare.pk}, format="json"), 400)
    assert "declares no metrics" in body["errors"][0]["detail"]
    assert admin_client.post(RULES, {**THRESHOLD, "metric": "anything_at_all"}, format="json").status_code == 201


def test_moving_a_rule_to_a_type_without_its_metric_is_refused(admin_client, thermometer):
    rule = RuleFactory(metric="humidity")
    assert_problem(admin_client.patch(f"{RULES}{rule.pk}/", {"device_type": thermometer.pk}, format="json"), 400)
    rule.refresh_from_db()
    assert rule.device_type is None


def _insert_rule_in_sql(metric="temprature", **target):
    """A DBA's INSERT of a threshold rule ``<metric> > 30`` (target: device_type_id or device_id, or none): no API,
    no Admin, no Python check. Returns its id."""
    columns = "".join(f", {column}" for column in target)
    values = ", %s" * len(target)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO rules (name, description, kind, metric, operator, threshold, severity, enabled, dedupe,"
            f" auto_resolve, message_template, created_at, updated_at{columns})"
            " VALUES ('sql ' || gen_random_uuid(), '', 'threshold', %s, 'gt', '30', 'warning', true, true, false,"
            f" 'too hot', now(), now(){values}) RETURNING id",
            [metric, *target.values()],
        )
        return cursor.fetchone()[0]


@pytest.mark.parametrize("target", ["device_type_id", "device_id"])
def test_the_database_refuses_an_undeclared_metric_from_any_writer(thermometer, target):
    device = DeviceFactory(device_type=thermometer)
    value = thermometer.pk if target == "device_type_id" else device.pk
    with pytest.raises(DatabaseError) as refused:
        _insert_rule_in_sql(**{target: value})
    error = refused.value.__cause__
    assert (error.pgcode, error.diag.message_primary) == (
        "IO004",
        "The device type thermometer declares no metric 'temprature'.",
    )
    rule_id = _insert_rule_in_sql(metric="temperature", **{target: value})
    with pytest.raises(DatabaseError, match="declares no metric 'humidity'"), transaction.atomic():
        Rule.objects.filter(pk=rule_id).update(metric="humidity")
    assert Rule.objects.get(pk=rule_id).metric == "temperature"
    _insert_rule_in_sql()  # for every device: any metric
    # A metric removed from the type later leaves the rule as it is until its metric or target is written again.
    thermometer.metrics = [{"name": "battery"}]
    thermometer.save()
    Rule.objects.filter(pk=rule_id).update(enabled=False)
    assert not Rule.objects.get(pk=rule_id).enabled


def test_the_api_answers_the_databases_refusal_with_a_problem(admin_client, thermometer):
    """A type that lost the rule's metric after the API checked it: the database's refusal is a 400 problem."""
    rule = RuleFactory(metric="temperature", device_type=thermometer)
    thermometer.metrics = [{"name": "battery"}]
    thermometer.save()
    with pytest.raises(DatabaseError) as refused, transaction.atomic():
        Rule.objects.filter(pk=rule.pk).update(device_type=thermometer)
    response = problem_exception_handler(refused.value, {})
    assert response.status_code == 400
    assert response.data["errors"] == [
        {
            "pointer": "",
            "detail": "The device type thermometer declares no metric 'temperature'. A rule for a device or a device "
            "type names a metric its type declares: declare it on the type first, or target every device.",
            "code": "undeclared_metric",
        }
    ]


def test_a_device_answers_with_status_changed_at_set_by_the_database(operator_client):
    device = DeviceFactory()
    device.refresh_from_db()
    before = device.status_changed_at
    body = operator_client.patch(f"/api/v1/devices/{device.pk}/", {"location": "roof"}, format="json").json()
    assert body["status_changed_at"] == before.isoformat().replace("+00:00", "Z")
    body = operator_client.patch(f"/api/v1/devices/{device.pk}/", {"status": "maintenance"}, format="json").json()
    assert datetime.fromisoformat(body["status_changed_at"]) > before


# Admin -----------------------------------------------------------------------------------------------------------


@pytest.fixture
def admin_site_client(client):
    UserFactory(username="boss", role=Role.ADMIN)
    assert client.login(username="boss", password=PASSWORD)
    return client


INLINE = {
    "rule_channels-TOTAL_FORMS": "0",
    "rule_channels-INITIAL_FORMS": "0",
    "rule_channels-MIN_NUM_FORMS": "0",
    "rule_channels-MAX_NUM_FORMS": "1000",
}


def no_data_form(**fields):
    return {
        "name": "silent",
        "description": "",
        "enabled": "on",
        "kind": "no_data",
        "metric": "",
        "operator": "",
        "threshold_type": "number",
        "threshold": "",
        "no_data_seconds": "600",
        "severity": "critical",
        "message_template": DEFAULT_NO_DATA_MESSAGE_TEMPLATE,
        "dedupe": "on",
        **INLINE,
        **fields,
    }


def test_the_add_page_shows_both_kinds_plain_inputs_and_no_database_default_object(admin_site_client, thermometer):
    page = admin_site_client.get("/admin/rules/rule/add/", **HTTPS).content.decode()
    assert "DatabaseDefault" not in page
    assert 'name="kind" value="no_data"' in page
    assert '<input type="text" name="threshold"' in page  # not a JSON textarea prefilled with null
    assert ">null</textarea>" not in page
    assert '<datalist id="declared-metrics"><option value="temperature" data-device-type="' in page
    assert "thermometer, °C" in page
    assert 'id="rule-kind-rows"' in page  # the script's rows per kind
    assert "At most one unresolved event per device" in page  # dedupe explained


def test_an_admin_adds_a_no_data_rule_for_any_reading(admin_site_client):
    response = admin_site_client.post("/admin/rules/rule/add/", no_data_form(), **HTTPS)
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = Rule.objects.get()
    assert (rule.kind, rule.metric, rule.operator, rule.threshold, rule.no_data_seconds) == (
        "no_data",
        None,
        None,
        None,
        600,
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"no_data_seconds": ""}, "A no-data rule needs the silence it waits for"),
        ({"operator": "gt"}, "A no-data rule has no operator"),
        ({"kind": "threshold", "metric": "temperature", "operator": "gt", "threshold": "30"}, "Only no-data rules"),
    ],
)
def test_the_admin_form_explains_fields_of_the_wrong_kind(admin_site_client, fields, message):
    response = admin_site_client.post("/admin/rules/rule/add/", no_data_form(**fields), **HTTPS)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Rule.objects.exists()


@pytest.mark.parametrize(
    ("kind_of_threshold", "text", "stored"),
    [("number", "21.5", 21.5), ("number", "30", 30), ("boolean", "True", True), ("string", "open", "open")],
)
def test_the_threshold_is_a_plain_input_of_the_stated_type(admin_site_client, kind_of_threshold, text, stored):
    form = no_data_form(
        kind="threshold",
        metric="door",
        operator="eq",
        threshold_type=kind_of_threshold,
        threshold=text,
        no_data_seconds="",
        message_template="{device_name}: {metric} is {value}",
    )
    response = admin_site_client.post("/admin/rules/rule/add/", form, **HTTPS)
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = Rule.objects.get()
    assert rule.threshold == stored
    assert type(rule.threshold) is type(stored)
    page = admin_site_client.get(f"/admin/rules/rule/{rule.pk}/change/", **HTTPS).content.decode()
    assert f'name="threshold" value="{text if kind_of_threshold != "boolean" else "true"}"' in page


def test_the_channel_rows_of_a_rule_are_labelled_with_the_channel(admin_site_client):
    channel = NotificationChannelFactory(name="ops mail", kind="email", target="ops@example.com")
    rule = RuleFactory(channels=[channel])
    page = admin_site_client.get(f"/admin/rules/rule/{rule.pk}/change/", **HTTPS).content.decode()
    link = RuleChannel.objects.get()
    assert "ops mail (email)" in page
    assert f"{rule.pk} → {channel.pk}" not in page
    assert str(link) == "ops mail (email)"


def test_the_rule_list_shows_kinds_and_no_data_conditions(admin_site_client):
    RuleFactory(name="quiet", kind="no_data", metric=None, operator=None, threshold=None, no_data_seconds=600)
    page = admin_site_client.get("/admin/rules/rule/", {"kind__exact": "no_data"}, **HTTPS).content.decode()
    assert "no reading for 600 s" in page


def test_events_of_no_data_rules_need_no_new_path(admin_client):
    """They are events like any other: listed, filtered and acknowledged through the same endpoints."""
    RuleFactory(kind="no_data", operator=None, threshold=None, no_data_seconds=60, message_template="{device_name}")
    device = DeviceFactory()
    device.refresh_from_db()
    no_data_rules_evaluate(at=device.status_changed_at + timedelta(minutes=5))
    event = Event.objects.get()
    response = admin_client.post(f"/api/v1/events/{event.pk}/acknowledge/", {"note": "on it"}, format="json")
    assert response.json()["status"] == "acknowledged"
    assert datetime.fromisoformat(response.json()["triggered_at"]) == device.status_changed_at.astimezone(
        UTC
    ) + timedelta(minutes=1)
