"""Facts stated once in Python and once in SQL agree: the operators, the message placeholders, the notification
payload's keys, the event status transitions, the device statuses the rules skip and where a clear threshold may
lie. Each test fails when one side changes without the other: the Python declaration is the reference, the SQL is
exercised for real."""

import json
import operator as python_operator
import re
from datetime import UTC, datetime
from itertools import product

import pytest
from django.db import DatabaseError, connection, transaction

from iothub.migration_operations import SQL_DIR
from rules.models import (
    CLEAR_ABOVE_OPERATORS,
    CLEAR_BELOW_OPERATORS,
    EVENT_TRANSITIONS,
    MESSAGE_PLACEHOLDERS,
    NOTIFICATION_PAYLOAD_KEYS,
    Event,
    EventStatus,
    Notification,
    Operator,
    clear_threshold_problem,
)
from rules.notifications import _content
from telemetry.models import UNEVALUATED_STATUSES, DeviceStatus
from tests.factories import DeviceFactory, NotificationChannelFactory, RuleFactory

from .conftest import insert_readings

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PYTHON_COMPARISON = {
    Operator.GT: python_operator.gt,
    Operator.LT: python_operator.lt,
    Operator.GTE: python_operator.ge,
    Operator.LTE: python_operator.le,
    Operator.EQ: python_operator.eq,
    Operator.NEQ: python_operator.ne,
}


def sql_value(query, *params):
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchone()[0]


def test_every_operator_compares_in_sql_as_its_python_meaning():
    assert set(PYTHON_COMPARISON) == set(Operator)
    for operator, (value, threshold) in product(Operator, product((29.5, 30, 30.5), (30,))):
        matches = sql_value("SELECT rule_matches(%s, %s::jsonb, %s::jsonb)", operator.value, str(value), str(threshold))
        assert matches is PYTHON_COMPARISON[operator](value, threshold), (operator, value, threshold)


def test_every_operator_renders_as_the_symbol_its_label_names():
    for operator in Operator:
        symbol = re.search(r"\((.+)\)$", operator.label).group(1)
        rendered = sql_value(
            "SELECT rule_render_message('{operator}', 'd', 'm', '1'::jsonb, %s, '1'::jsonb)", operator.value
        )
        assert rendered == symbol


def test_the_sql_renders_exactly_the_python_placeholders():
    in_sql = set(re.findall(r"'\{(\w+)\}'", (SQL_DIR / "functions" / "rule_render_message.sql").read_text()))
    assert in_sql == set(MESSAGE_PLACEHOLDERS)
    template = " ".join("{" + name + "}" for name in MESSAGE_PLACEHOLDERS)
    rendered = sql_value("SELECT rule_render_message(%s, 'd', 'm', '1'::jsonb, 'gt', '2'::jsonb)", template)
    assert not re.search(r"\{\w+\}", rendered), rendered


def test_the_trigger_writes_the_payload_keys_that_delivery_reads():
    rule = RuleFactory(channels=[NotificationChannelFactory()])
    insert_readings([(DeviceFactory().pk, T0, {rule.metric: 99})])
    notification = Notification.objects.get()
    assert set(notification.payload) == set(NOTIFICATION_PAYLOAD_KEYS)
    assert list(_content(notification)) == list(NOTIFICATION_PAYLOAD_KEYS)


def set_status(event_id, status):
    """An UPDATE as psql would write it, with the times the events' CHECK constraints ask for."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE events SET status = %(status)s,"
            " acknowledged_at = CASE WHEN %(status)s = 'acknowledged' THEN now() ELSE acknowledged_at END,"
            " resolved_at = CASE WHEN %(status)s = 'resolved' THEN now() END"
            " WHERE id = %(id)s",
            {"status": status, "id": event_id},
        )


@pytest.mark.parametrize(
    ("source", "target"), [(source, target) for source, target in product(EventStatus, EventStatus) if source != target]
)
def test_the_database_allows_exactly_the_python_event_transitions(source, target):
    rule = RuleFactory()
    insert_readings([(DeviceFactory().pk, T0, {rule.metric: 99})])
    event = Event.objects.get()
    set_status(event.pk, source)  # every status is one step from open (no-op for open itself)
    if target in EVENT_TRANSITIONS[source]:
        set_status(event.pk, target)
    else:
        with pytest.raises(DatabaseError) as refused, transaction.atomic():
            set_status(event.pk, target)
        assert refused.value.__cause__.pgcode == "IO001"  # event_status_transition, not a constraint
    assert Event.objects.get().status == (target if target in EVENT_TRANSITIONS[source] else source)


@pytest.mark.parametrize("status", list(DeviceStatus))
def test_the_trigger_skips_exactly_the_python_unevaluated_device_statuses(status):
    rule = RuleFactory()
    device = DeviceFactory(status=status)
    insert_readings([(device.pk, T0, {rule.metric: 99})])
    assert Event.objects.filter(device=device).exists() is (status not in UNEVALUATED_STATUSES)


@pytest.mark.parametrize(("operator", "auto_resolve"), list(product(Operator, (True, False))))
def test_the_database_accepts_exactly_the_clear_thresholds_python_accepts(operator, auto_resolve):
    threshold = 30
    rule = RuleFactory(operator=operator, threshold=threshold, auto_resolve=auto_resolve)
    for clear in (29, 30, 31, "30", True):
        accepted_in_python = clear_threshold_problem(operator, threshold, clear, auto_resolve) is None
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("UPDATE rules SET clear_threshold = %s WHERE id = %s", [json.dumps(clear), rule.pk])
            accepted_in_sql = True
        except DatabaseError:
            accepted_in_sql = False
        assert accepted_in_sql is accepted_in_python, (operator, auto_resolve, clear)
    # The sides as documented: below for gt/gte, above for lt/lte.
    assert set(CLEAR_BELOW_OPERATORS) | set(CLEAR_ABOVE_OPERATORS) == set(Operator) - {Operator.EQ, Operator.NEQ}
