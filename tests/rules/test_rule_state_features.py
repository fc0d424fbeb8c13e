"""Issue 14: durations (for_seconds, max_gap_seconds) and hysteresis (clear_threshold), evaluated by the rule
trigger with the per-(rule, device) state in rule_states; validated by Rule.clean(), the API and CHECKs."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, transaction

from rules.models import Event, Rule, RuleState
from tests.conftest import assert_problem
from tests.factories import DeviceFactory, NotificationChannelFactory, RuleFactory

from .conftest import insert_readings

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def readings(device, *pairs):
    return [(device.pk, at(seconds), {"temperature": value}) for seconds, value in pairs]


def one_by_one(device, *pairs):
    for row in readings(device, *pairs):
        insert_readings([row])


def event_of(rule):
    events = list(Event.objects.filter(rule=rule))
    assert len(events) <= 1
    return events[0] if events else None


# Duration --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delivery", ["one by one", "one batch", "reversed", "shuffled batches"])
def test_the_event_opens_once_the_matching_span_lasts_for_seconds(delivery):
    rule = RuleFactory(for_seconds=60, channels=[NotificationChannelFactory()])
    device = DeviceFactory()
    pairs = [(0, 31), (30, 32), (59, 33), (60, 34), (90, 35)]
    if delivery == "one by one":
        one_by_one(device, *pairs[:3])
        assert event_of(rule) is None  # 59 s of matching: pending
        one_by_one(device, *pairs[3:])
    elif delivery == "one batch":
        insert_readings(readings(device, *pairs))
    elif delivery == "reversed":
        one_by_one(device, *reversed(pairs))
    else:
        insert_readings(readings(device, pairs[3], pairs[0]))
        insert_readings(readings(device, pairs[4], pairs[2], pairs[1]))
    event = event_of(rule)
    assert event is not None
    assert (event.triggered_at, event.trigger_values["value"]) == (at(0), 31)  # the span's first reading
    assert (event.last_triggered_at, event.last_values["value"]) == (at(90), 35)
    assert event.occurrence_count == 5
    assert event.notifications.count() == 1


def test_a_pending_span_is_visible_in_rule_states():
    rule = RuleFactory(for_seconds=60)
    device = DeviceFactory()
    one_by_one(device, (0, 31), (20, 32))
    state = RuleState.objects.get(rule=rule, device=device)
    assert (state.span_started_at, state.span_last_at, state.span_count, state.event_open) == (at(0), at(20), 2, False)
    with connection.cursor() as cursor:  # what a DBA runs (docs/rules.md, "Rule state")
        cursor.execute(
            "SELECT r.name, s.span_started_at FROM rule_states s JOIN rules r ON r.id = s.rule_id"
            " WHERE r.for_seconds IS NOT NULL AND s.span_started_at IS NOT NULL"
            " AND s.span_last_at - s.span_started_at < r.for_seconds * interval '1 second'"
        )
        assert cursor.fetchall() == [(rule.name, at(0))]


@pytest.mark.parametrize("batch", [False, True])
def test_a_non_matching_reading_restarts_the_span(batch):
    rule = RuleFactory(for_seconds=60)
    device = DeviceFactory()
    pairs = [(0, 31), (50, 20), (55, 31), (100, 31), (115, 31)]
    insert_readings(readings(device, *pairs)) if batch else one_by_one(device, *pairs)
    assert event_of(rule).triggered_at == at(55)
    assert event_of(rule).occurrence_count == 3


def test_max_gap_seconds_breaks_the_span_and_unset_never_does():
    gapped, ungapped = RuleFactory(for_seconds=60, max_gap_seconds=20), RuleFactory(for_seconds=60)
    device = DeviceFactory()
    one_by_one(device, (0, 31), (30, 31), (45, 31), (60, 31))
    assert event_of(ungapped).triggered_at == at(0)
    assert event_of(gapped) is None  # 0 → 30 is a 30 s gap: the span starts again at 30
    one_by_one(device, (75, 31), (90, 31))
    assert event_of(gapped).triggered_at == at(30)


def test_a_late_non_matching_reading_inside_a_pending_span_breaks_it():
    rule = RuleFactory(for_seconds=60)
    device = DeviceFactory()
    one_by_one(device, (0, 31), (50, 31), (30, 20))
    one_by_one(device, (70, 31))
    assert event_of(rule) is None  # the span restarted after 30
    one_by_one(device, (110, 31))
    assert event_of(rule).triggered_at == at(50)


def test_a_duration_with_auto_resolve_resolves_and_waits_a_full_span_again():
    rule = RuleFactory(for_seconds=60, auto_resolve=True)
    device = DeviceFactory()
    one_by_one(device, (0, 31), (60, 31), (70, 20))
    assert list(Event.objects.values_list("status", flat=True)) == ["resolved"]
    one_by_one(device, (80, 31), (120, 31))
    assert Event.objects.filter(rule=rule).count() == 1
    one_by_one(device, (140, 31))
    assert list(Event.objects.order_by("id").values_list("status", "triggered_at")) == [
        ("resolved", at(0)),
        ("open", at(80)),
    ]


# Hysteresis ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "threshold", "clear", "breach", "in_band", "clearing"),
    [
        ("gt", 80, 75, 85, 78, 75),
        ("gte", 80, 75, 80, 75.5, 74.9),
        ("lt", 10, 12, 5, 11, 12),
        ("lte", 10, 12, 10, 12, 12.1),
    ],
)
def test_auto_resolve_waits_for_the_clear_threshold(operator, threshold, clear, breach, in_band, clearing):
    rule = RuleFactory(operator=operator, threshold=threshold, clear_threshold=clear, auto_resolve=True)
    device = DeviceFactory()
    one_by_one(device, (0, breach), (10, in_band), (20, in_band))
    assert event_of(rule).status == "open"
    one_by_one(device, (30, clearing))
    assert event_of(rule).status == "resolved"


def test_without_clear_threshold_any_non_matching_reading_resolves():
    rule = RuleFactory(threshold=80, auto_resolve=True)
    device = DeviceFactory()
    one_by_one(device, (0, 85), (10, 80))
    assert event_of(rule).status == "resolved"


# Validation ------------------------------------------------------------------------------------------------------

RULE = {"name": "boiler", "metric": "temperature", "operator": "gt", "threshold": 80}


@pytest.mark.parametrize(
    ("change", "pointer", "fragment"),
    [
        ({"clear_threshold": 85, "auto_resolve": True}, "/clear_threshold", "at or below the threshold (80)"),
        ({"operator": "lt", "clear_threshold": 75, "auto_resolve": True}, "/clear_threshold", "at or above"),
        ({"clear_threshold": 75}, "/clear_threshold", "turn auto_resolve on"),
        ({"operator": "eq", "clear_threshold": 75, "auto_resolve": True}, "/clear_threshold", "no clear threshold"),
        ({"clear_threshold": "75", "auto_resolve": True}, "/clear_threshold", "must be a number"),
        ({"for_seconds": 0}, "/for_seconds", "positive"),
        ({"for_seconds": 60, "dedupe": False}, "/for_seconds", "needs dedupe"),
        ({"max_gap_seconds": 30}, "/max_gap_seconds", "only applies to a rule with a duration"),
    ],
)
def test_bad_durations_and_clear_thresholds_are_refused_with_a_pointer(admin_client, change, pointer, fragment):
    response = admin_client.post("/api/v1/rules/", {**RULE, **change}, format="json")
    body = assert_problem(response, 400, "invalid")
    assert [error["pointer"] for error in body["errors"]] == [pointer], body
    assert fragment in body["errors"][0]["detail"]
    assert not Rule.objects.exists()


def test_the_api_writes_and_reads_the_new_fields(admin_client):
    new = {**RULE, "auto_resolve": True, "clear_threshold": 75, "for_seconds": 120, "max_gap_seconds": 30}
    response = admin_client.post("/api/v1/rules/", new, format="json")
    assert response.status_code == 201, response.content
    body = admin_client.get(f"/api/v1/rules/{response.json()['id']}/").json()
    assert (body["clear_threshold"], body["for_seconds"], body["max_gap_seconds"]) == (75, 120, 30)
    schema = admin_client.get("/api/v1/schema/?format=json").json()
    properties = schema["components"]["schemas"]["Rule"]["properties"]
    assert {"clear_threshold", "for_seconds", "max_gap_seconds"} <= set(properties)
    assert "resolves only on a reading" in properties["clear_threshold"]["description"]


@pytest.mark.parametrize(
    "columns",
    [
        "clear_threshold = '85', auto_resolve = true",
        "clear_threshold = '75', auto_resolve = false",
        "clear_threshold = '75', auto_resolve = true, operator = 'eq'",
        "for_seconds = 0",
        "for_seconds = 60, dedupe = false",
        "max_gap_seconds = 10",
    ],
)
def test_the_database_refuses_what_clean_refuses(columns):
    rule = RuleFactory(threshold=80)
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE rules SET {columns} WHERE id = %s", [rule.pk])


# Cost: state writes stay with the pairs that need them ----------------------------------------------------------


def test_readings_of_pairs_without_open_event_or_pending_span_write_no_state():
    RuleFactory(auto_resolve=True)
    RuleFactory(name="slow", for_seconds=60)
    device = DeviceFactory()
    insert_readings(readings(device, (0, 20), (1, 21)))
    assert not RuleState.objects.exists()
    one_by_one(device, (2, 31), (3, 20))  # opens and resolves; the span ends
    assert RuleState.objects.filter(span_started_at__isnull=False).count() == 0
    assert RuleState.objects.filter(event_open=True).count() == 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT n_tup_upd + n_tup_ins FROM pg_stat_xact_user_tables WHERE relname = 'rule_states'")
        writes = cursor.fetchone()[0]
        insert_readings(readings(device, (4, 20)), cursor)
        cursor.execute("SELECT n_tup_upd + n_tup_ins FROM pg_stat_xact_user_tables WHERE relname = 'rule_states'")
        assert cursor.fetchone()[0] == writes


def test_a_rule_edited_to_keep_no_state_is_evaluated_once_with_the_stateless_rules():
    rule = RuleFactory(auto_resolve=True)
    device = DeviceFactory()
    one_by_one(device, (0, 31))
    assert RuleState.objects.get(rule=rule).event_open  # a watched pair
    Rule.objects.filter(pk=rule.pk).update(auto_resolve=False)
    one_by_one(device, (10, 32), (20, 20))
    event = event_of(rule)
    assert (event.status, event.occurrence_count) == ("open", 2)
