"""The rules tables' constraints hold for every writer, not only the API."""

from datetime import UTC, datetime

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from rules.models import Event, Rule
from tests.factories import DeviceFactory, DeviceTypeFactory

pytestmark = pytest.mark.django_db


def make_rule(**fields):
    values = {"name": "hot", "metric": "temperature", "operator": "gt", "threshold": 30, **fields}
    return Rule.objects.create(**values)


@pytest.mark.parametrize(
    ("operator", "threshold"),
    [("gt", "30"), ("lte", True), ("neq", [1]), ("eq", {"a": 1})],
)
def test_threshold_type_must_suit_the_operator(operator, threshold):
    with pytest.raises(IntegrityError, match="rules_threshold_type"), transaction.atomic():
        make_rule(operator=operator, threshold=threshold)


@pytest.mark.parametrize(("operator", "threshold"), [("gt", 1.5), ("eq", "on"), ("neq", False), ("eq", 21)])
def test_thresholds_the_operator_accepts(operator, threshold):
    assert make_rule(operator=operator, threshold=threshold).pk


def test_a_rule_targets_a_device_type_or_a_device_not_both():
    device = DeviceFactory(device_type=DeviceTypeFactory(metrics=[{"name": "temperature"}]))
    with pytest.raises(IntegrityError, match="rules_one_target"), transaction.atomic():
        make_rule(device=device, device_type=device.device_type)


@pytest.mark.parametrize("field", ["operator", "severity"])
def test_enums_are_checked(field):
    with pytest.raises(IntegrityError, match=f"rules_{field}_valid"), transaction.atomic():
        make_rule(**{field: "bogus"})


@pytest.mark.parametrize("metric", ["1 bad name", "temperature\n"])
def test_metric_name_is_checked(metric):
    with pytest.raises(IntegrityError, match="rules_metric_name"), transaction.atomic():
        make_rule(metric=metric)


def test_deleting_a_device_deletes_its_rules_in_the_database():
    thermometer = DeviceTypeFactory(metrics=[{"name": "temperature"}])
    device = DeviceFactory(device_type=thermometer)
    make_rule(device=device)
    kept = make_rule(name="global")
    typed = make_rule(name="typed", device_type=thermometer)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM devices WHERE id = %s", [device.pk])
    assert set(Rule.objects.values_list("pk", flat=True)) == {kept.pk, typed.pk}


def _event(**fields):
    now = datetime.now(UTC)
    values = {
        "rule_name": "hot",
        "device": DeviceFactory(),
        "dedupe": True,
        "severity": "warning",
        "message": "hot",
        "triggered_at": now,
        "last_triggered_at": now,
        "trigger_values": {},
        "last_values": {},
        **fields,
    }
    return Event.objects.create(**values)


@pytest.mark.parametrize(
    ("before", "after"),
    [("acknowledged", "open"), ("resolved", "open"), ("resolved", "acknowledged")],
)
def test_event_status_goes_forward_only_whoever_writes(before, after):
    now = datetime.now(UTC)
    event = _event(status=before, acknowledged_at=now, resolved_at=now if before == "resolved" else None)
    with (
        pytest.raises(DatabaseError, match="cannot go from") as raised,
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE events SET status = %s, resolved_at = NULL WHERE id = %s", [after, event.pk])
    assert raised.value.__cause__.pgcode == "IO001"
    assert "open -> acknowledged -> resolved" in raised.value.__cause__.diag.message_hint


def test_forward_transitions_are_allowed():
    event = _event()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE events SET status = 'acknowledged', acknowledged_at = now() WHERE id = %s", [event.pk])
        cursor.execute("UPDATE events SET status = 'resolved', resolved_at = now() WHERE id = %s", [event.pk])
        cursor.execute("SELECT status FROM events WHERE id = %s", [event.pk])
        assert cursor.fetchone() == ("resolved",)


def test_an_out_of_order_transition_from_sql_is_a_409_problem_in_the_api():
    from iothub.api.exception_handler import problem_exception_handler

    event = _event(status="resolved", resolved_at=datetime.now(UTC))
    with pytest.raises(DatabaseError) as raised, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE events SET status = 'open', resolved_at = NULL WHERE id = %s", [event.pk])
    response = problem_exception_handler(raised.value, {})
    assert response.status_code == 409
    assert response.data["code"] == "invalid_transition"
    assert "cannot go from resolved to open" in response.data["detail"]
