"""The rules/ and events/ API: validation an admin understands, role permissions, filters and the event lifecycle."""

from datetime import UTC, datetime, timedelta

import pytest

from rules import services
from rules.models import Event, EventStatus, Rule
from tests.conftest import assert_problem
from tests.factories import DeviceFactory, DeviceTypeFactory, NotificationChannelFactory, RuleFactory, UserFactory

from .conftest import insert_readings

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
RULE = {"name": "too hot", "metric": "temperature", "operator": "gt", "threshold": 30, "severity": "critical"}


def test_an_admin_creates_a_rule_that_the_database_then_applies(admin_client):
    channel = NotificationChannelFactory()
    device_type = DeviceTypeFactory(metrics=[{"name": "temperature", "unit": "°C"}])
    response = admin_client.post(
        "/api/v1/rules/", {**RULE, "device_type": device_type.pk, "channels": [channel.pk]}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["channels"] == [channel.pk]
    assert (body["enabled"], body["dedupe"], body["auto_resolve"]) == (True, True, False)
    assert body["message_template"] == "{device_name}: {metric} is {value} ({operator} {threshold})"
    device = DeviceFactory(device_type=device_type, name="boiler")
    insert_readings([(device.pk, T0, {"temperature": 30.5})])
    event = Event.objects.get()
    assert event.message == "boiler: temperature is 30.5 (> 30)"
    assert event.notifications.count() == 1


@pytest.mark.parametrize(
    ("change", "pointer", "fragment"),
    [
        ({"threshold": "30"}, "/threshold", "must be a number"),
        ({"threshold": True}, "/threshold", "must be a number"),
        ({"operator": "eq", "threshold": [1]}, "/threshold", "a number, a boolean or a string"),
        ({"operator": "eq", "threshold": {"a": 1}}, "/threshold", "a number, a boolean or a string"),
        ({"threshold": None}, "/threshold", "needs a threshold"),
        ({"metric": "9 lives"}, "/metric", "starts with a letter"),
        ({"message_template": "{device} is hot"}, "/message_template", "Unknown placeholder {device}"),
        ({"operator": "between"}, "/operator", "not a valid choice"),
        ({"severity": "fatal"}, "/severity", "not a valid choice"),
        ({"channels": [999999]}, "/channels", "does not exist"),
        ({"colour": "red"}, "/colour", "Unknown field"),
    ],
)
def test_bad_rules_are_refused_with_a_pointer_and_change_nothing(admin_client, change, pointer, fragment):
    response = admin_client.post("/api/v1/rules/", {**RULE, **change}, format="json")
    body = assert_problem(response, 400, "invalid")
    assert [error["pointer"] for error in body["errors"]] == [pointer], body
    assert fragment in body["errors"][0]["detail"]
    assert not Rule.objects.exists()


def test_a_rule_targets_a_device_or_a_device_type_not_both(admin_client):
    device = DeviceFactory()
    response = admin_client.post(
        "/api/v1/rules/", {**RULE, "device": str(device.pk), "device_type": device.device_type_id}, format="json"
    )
    body = assert_problem(response, 400)
    assert body["errors"][0]["pointer"] == "/device"
    assert "not both" in body["errors"][0]["detail"]
    assert not Rule.objects.exists()


def test_a_patch_is_checked_against_the_rest_of_the_rule(admin_client):
    rule = RuleFactory(operator="eq", threshold="open", metric="door")
    response = admin_client.patch(f"/api/v1/rules/{rule.pk}/", {"operator": "gt"}, format="json")
    assert_problem(response, 400)
    rule.refresh_from_db()
    assert rule.operator == "eq"
    response = admin_client.patch(f"/api/v1/rules/{rule.pk}/", {"operator": "gt", "threshold": 3}, format="json")
    assert response.status_code == 200, response.content


def test_channels_can_be_replaced_and_cleared(admin_client):
    first, second = NotificationChannelFactory(), NotificationChannelFactory()
    rule = RuleFactory(channels=[first])
    response = admin_client.patch(f"/api/v1/rules/{rule.pk}/", {"channels": [second.pk]}, format="json")
    assert response.json()["channels"] == [second.pk]
    admin_client.patch(f"/api/v1/rules/{rule.pk}/", {"channels": []}, format="json")
    assert list(rule.channels.all()) == []


def test_deleting_a_rule_keeps_its_events(admin_client):
    rule = RuleFactory(name="hot")
    insert_readings([(DeviceFactory().pk, T0, {"temperature": 99})])
    assert admin_client.delete(f"/api/v1/rules/{rule.pk}/").status_code == 204
    response = admin_client.get("/api/v1/events/")
    [event] = response.json()["results"]
    assert (event["rule"], event["rule_name"]) == (None, "hot")


@pytest.mark.parametrize(
    ("role_client", "read", "write"),
    [("admin", 200, 201), ("operator", 200, 403), ("viewer", 200, 403), ("anonymous", 401, 401)],
    indirect=["role_client"],
)
def test_rule_permissions(role_client, read, write):
    assert role_client.get("/api/v1/rules/").status_code == read
    response = role_client.post("/api/v1/rules/", RULE, format="json")
    assert response.status_code == write
    if write != 201:
        assert_problem(response, write)
        assert not Rule.objects.exists()


def fire(device, seconds, rule_name="hot", **rule_fields):
    rule = Rule.objects.filter(name=rule_name).first() or RuleFactory(name=rule_name, **rule_fields)
    insert_readings([(device.pk, T0 + timedelta(seconds=seconds), {rule.metric: 99})])
    return Event.objects.filter(rule=rule, device=device).latest("id")


def test_events_list_newest_first_with_filters(viewer_client):
    boiler, fridge = DeviceFactory(name="boiler"), DeviceFactory(name="fridge")
    old = fire(boiler, 0)
    new = fire(fridge, 60, rule_name="cold", metric="humidity", severity="critical")
    Event.objects.filter(pk=old.pk).update(status=EventStatus.RESOLVED, resolved_at=T0)

    def ids(query=""):
        response = viewer_client.get(f"/api/v1/events/{query}")
        assert response.status_code == 200, response.content
        return [event["id"] for event in response.json()["results"]]

    assert ids() == [new.pk, old.pk]
    assert ids("?status=open") == [new.pk]
    assert ids("?status=open&status=resolved") == [new.pk, old.pk]
    assert ids("?severity=critical") == [new.pk]
    assert ids(f"?device={boiler.pk}") == [old.pk]
    assert ids(f"?rule={new.rule_id}") == [new.pk]
    assert ids("?start=2026-11-27T12:00:30Z") == [new.pk]
    assert ids("?end=2026-11-27T12:00:30Z") == [old.pk]
    body = viewer_client.get(f"/api/v1/events/{new.pk}/").json()
    assert body["device_name"] == "fridge"
    assert body["trigger_values"] == {"metric": "humidity", "value": 99, "operator": "gt", "threshold": 30}


def test_events_order_by_severity_rank_not_alphabetically(viewer_client):
    device = DeviceFactory()
    info = fire(device, 0, rule_name="door", metric="door", severity="info")
    critical = fire(device, 60, rule_name="boiler", metric="boiler", severity="critical")
    warning = fire(device, 120, rule_name="humid", metric="humid", severity="warning")
    older_warning = fire(DeviceFactory(), 30, rule_name="humid")

    def ids(ordering):
        response = viewer_client.get("/api/v1/events/", {"ordering": ordering})
        assert response.status_code == 200, response.content
        return [event["id"] for event in response.json()["results"]]

    # Equal severities keep the list's own order: newest first.
    assert ids("-severity") == [critical.pk, warning.pk, older_warning.pk, info.pk]
    assert ids("severity") == [info.pk, warning.pk, older_warning.pk, critical.pk]
    assert ids("-severity,triggered_at") == [critical.pk, older_warning.pk, warning.pk, info.pk]


def test_rules_order_by_severity_rank(viewer_client):
    for name, severity in [("a", "warning"), ("b", "critical"), ("c", "info")]:
        RuleFactory(name=name, severity=severity)
    names = [rule["name"] for rule in viewer_client.get("/api/v1/rules/?ordering=-severity").json()["results"]]
    assert names == ["b", "a", "c"]


def test_invalid_event_filters_are_400_problems(viewer_client):
    body = assert_problem(viewer_client.get("/api/v1/events/?status=closed&start=yesterday"), 400)
    assert sorted(error["parameter"] for error in body["errors"]) == ["start", "status"]


def test_acknowledge_then_resolve_records_who_when_and_notes(operator_client, operator_user):
    event = fire(DeviceFactory(), 0)
    response = operator_client.post(f"/api/v1/events/{event.pk}/acknowledge/", {"note": "on it"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["acknowledged_by"], body["acknowledged_note"]) == ("acknowledged", "operator", "on it")
    assert body["acknowledged_at"] is not None
    response = operator_client.post(f"/api/v1/events/{event.pk}/resolve/", format="json")
    body = response.json()
    assert (body["status"], body["resolved_by"], body["resolved_note"]) == ("resolved", "operator", "")
    event.refresh_from_db()
    assert (event.status, event.resolved_by, event.acknowledged_note) == ("resolved", operator_user, "on it")


def test_an_open_event_can_be_resolved_directly(admin_client):
    event = fire(DeviceFactory(), 0)
    response = admin_client.post(f"/api/v1/events/{event.pk}/resolve/", {"note": "false alarm"}, format="json")
    assert response.json()["status"] == "resolved"


@pytest.mark.parametrize(
    ("status", "action"),
    [("acknowledged", "acknowledge"), ("resolved", "acknowledge"), ("resolved", "resolve")],
)
def test_invalid_transitions_are_409_problems_and_change_nothing(operator_client, status, action):
    event = fire(DeviceFactory(), 0)
    Event.objects.filter(pk=event.pk).update(
        status=status, acknowledged_at=T0, resolved_at=T0 if status == "resolved" else None
    )
    response = operator_client.post(f"/api/v1/events/{event.pk}/{action}/", {"note": "again"}, format="json")
    body = assert_problem(response, 409, "invalid_transition")
    assert status in body["detail"]
    event.refresh_from_db()
    assert (event.status, event.acknowledged_note, event.resolved_note) == (status, "", "")


def test_transition_bodies_are_checked(operator_client):
    event = fire(DeviceFactory(), 0)
    response = operator_client.post(f"/api/v1/events/{event.pk}/acknowledge/", {"comment": "x"}, format="json")
    assert_problem(response, 400)
    assert_problem(operator_client.post("/api/v1/events/999999/acknowledge/", format="json"), 404)
    event.refresh_from_db()
    assert event.status == EventStatus.OPEN


@pytest.mark.parametrize(
    ("role_client", "read", "act"),
    [("admin", 200, 200), ("operator", 200, 200), ("viewer", 200, 403), ("anonymous", 401, 401)],
    indirect=["role_client"],
)
def test_event_permissions(role_client, read, act):
    event = fire(DeviceFactory(), 0)
    assert role_client.get("/api/v1/events/").status_code == read
    assert role_client.get(f"/api/v1/events/{event.pk}/").status_code == read
    assert role_client.post(f"/api/v1/events/{event.pk}/acknowledge/", format="json").status_code == act
    event.refresh_from_db()
    assert event.status == (EventStatus.ACKNOWLEDGED if act == 200 else EventStatus.OPEN)


def test_of_two_transitions_from_the_same_state_only_one_wins():
    event = fire(DeviceFactory(), 0)
    stale = Event.objects.get(pk=event.pk)
    user = UserFactory(role="operator")
    services.event_acknowledge(event=event, user=user)
    with pytest.raises(services.InvalidEventTransition):
        services.event_acknowledge(event=stale, user=user, note="late")
    event.refresh_from_db()
    assert (event.status, event.acknowledged_note) == ("acknowledged", "")


def test_events_are_read_only_through_the_api(admin_client):
    event = fire(DeviceFactory(), 0)
    assert_problem(admin_client.patch(f"/api/v1/events/{event.pk}/", {"status": "resolved"}, format="json"), 405)
    assert_problem(admin_client.delete(f"/api/v1/events/{event.pk}/"), 405)
