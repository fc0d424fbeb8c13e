"""The telemetry_evaluate_rules trigger: the database alone turns inserted readings into events and notifications.

Every reading here is inserted with plain SQL (tests/rules/conftest.py), not through the API.
"""

import select
import threading
from datetime import UTC, datetime, timedelta

import pgtrigger
import pytest
from django.db import IntegrityError, connection, transaction

from rules.models import Event, EventStatus, Notification, Rule
from telemetry.models import DeviceStatus, Telemetry
from tests.conftest import connect_separately
from tests.factories import DeviceFactory, DeviceTypeFactory, NotificationChannelFactory, RuleFactory

from .conftest import insert_readings

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def fires(rule, value, metric="temperature"):
    """Whether one reading {metric: value} of a fresh device makes ``rule`` fire."""
    device = DeviceFactory()
    insert_readings([(device.pk, at(0), {metric: value})])
    return Event.objects.filter(rule=rule, device=device).exists()


# Each operator at, just below and just above the threshold 30.
@pytest.mark.parametrize(
    ("operator", "below", "equal", "above"),
    [
        ("gt", False, False, True),
        ("lt", True, False, False),
        ("gte", False, True, True),
        ("lte", True, True, False),
        ("eq", False, True, False),
        ("neq", True, False, True),
    ],
)
def test_operators_at_and_around_the_threshold(operator, below, equal, above):
    rule = RuleFactory(operator=operator, threshold=30)
    assert fires(rule, 29.999) is below
    assert fires(rule, 30) is equal
    assert fires(rule, 30.001) is above


def test_numbers_are_equal_numerically():
    equal_int, equal_float = RuleFactory(operator="eq", threshold=21), RuleFactory(operator="eq", threshold=21.0)
    different = RuleFactory(operator="neq", threshold=21)
    device = DeviceFactory()
    insert_readings([(device.pk, at(0), {"temperature": 21.0}), (device.pk, at(1), {"temperature": 21})])
    assert Event.objects.get(rule=equal_int).occurrence_count == 2
    assert Event.objects.get(rule=equal_float).occurrence_count == 2
    assert not Event.objects.filter(rule=different).exists()


@pytest.mark.parametrize(
    ("operator", "threshold", "value", "expected"),
    [
        ("eq", True, True, True),
        ("eq", True, False, False),
        ("neq", True, False, True),
        ("neq", False, False, False),
        ("eq", "open", "open", True),
        ("eq", "open", "Open", False),
        ("neq", "open", "closed", True),
        ("neq", "open", "open", False),
    ],
)
def test_booleans_and_strings(operator, threshold, value, expected):
    rule = RuleFactory(metric="door", operator=operator, threshold=threshold)
    assert fires(rule, value, metric="door") is expected


@pytest.mark.parametrize(
    ("operator", "threshold", "value"),
    [
        ("gt", 30, "31"),  # a string of digits is not a number
        ("lt", 30, False),
        ("eq", 1, True),  # true is not 1
        ("eq", "1", 1),
        ("neq", True, "true"),  # different types never match, not even for neq
        ("neq", 5, {"value": 6}),
        ("eq", "x", ["x"]),
    ],
)
def test_a_different_json_type_never_matches(operator, threshold, value):
    rule = RuleFactory(metric="m", operator=operator, threshold=threshold)
    assert fires(rule, value, metric="m") is False


def test_a_missing_metric_never_matches():
    rule = RuleFactory(operator="neq", threshold=30)
    assert fires(rule, 99, metric="humidity") is False
    assert fires(rule, 99) is True


def test_devices_in_maintenance_are_stored_but_not_evaluated():
    RuleFactory()
    device = DeviceFactory(status=DeviceStatus.MAINTENANCE)
    insert_readings([(device.pk, at(0), {"temperature": 99})])
    assert Telemetry.objects.filter(device=device).count() == 1
    assert not Event.objects.exists()


def test_disabled_rules_are_skipped():
    RuleFactory(enabled=False)
    enabled = RuleFactory(metric="humidity", threshold=50)
    device = DeviceFactory()
    insert_readings([(device.pk, at(0), {"temperature": 99, "humidity": 99})])
    assert list(Event.objects.values_list("rule", flat=True)) == [enabled.pk]


def test_targeting_device_type_device_and_every_device():
    declared = [{"name": "temperature"}]
    boilers, fridges = (
        DeviceTypeFactory(name="boiler", metrics=declared),
        DeviceTypeFactory(name="fridge", metrics=declared),
    )
    boiler, fridge, other_fridge = (
        DeviceFactory(device_type=boilers),
        *DeviceFactory.create_batch(2, device_type=fridges),
    )
    for_boilers = RuleFactory(device_type=boilers)
    for_fridge = RuleFactory(device=fridge)
    for_all = RuleFactory()
    insert_readings([(device.pk, at(0), {"temperature": 99}) for device in (boiler, fridge, other_fridge)])
    fired = set(Event.objects.values_list("rule", "device"))
    assert fired == {
        (for_boilers.pk, boiler.pk),
        (for_fridge.pk, fridge.pk),
        (for_all.pk, boiler.pk),
        (for_all.pk, fridge.pk),
        (for_all.pk, other_fridge.pk),
    }


def test_the_event_records_the_reading_and_renders_the_message():
    rule = RuleFactory(
        name="too hot",
        severity="critical",
        operator="gte",
        threshold=30.5,
        message_template="{device_name}: {metric} {value} {operator} {threshold} ({device_name})",
    )
    device = DeviceFactory(name="boiler 1")
    insert_readings([(device.pk, at(0), {"temperature": 31, "humidity": 10})])
    event = Event.objects.get()
    assert (event.rule, event.rule_name, event.device, event.severity) == (rule, "too hot", device, "critical")
    assert event.message == "boiler 1: temperature 31 >= 30.5 (boiler 1)"
    assert event.status == EventStatus.OPEN
    assert event.triggered_at == event.last_triggered_at == at(0)
    assert event.occurrence_count == 1
    expected = {"metric": "temperature", "value": 31, "operator": "gte", "threshold": 30.5}
    assert event.trigger_values == event.last_values == expected


def test_string_values_render_without_quotes():
    RuleFactory(metric="state", operator="eq", threshold="jammed", message_template="{metric} is {value}")
    insert_readings([(DeviceFactory().pk, at(0), {"state": "jammed"})])
    assert Event.objects.get().message == "state is jammed"


def test_placeholders_are_substituted_in_one_pass():
    # Rendered text is never substituted again: a device's name or a string value can't pull other values in.
    RuleFactory(metric="state", operator="neq", threshold="ok", message_template="{device_name}: {value} ({threshold})")
    insert_readings([(DeviceFactory(name="pump {value}").pk, at(0), {"state": "{threshold} {operator}"})])
    assert Event.objects.get().message == "pump {value}: {threshold} {operator} (ok)"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{value}{value}", "4242"),
        ("{ {value} }", "{ 42 }"),
        ("{unknown} {value", "{unknown} {value"),
        ("}{metric}{", "}t{"),
        ("", ""),
    ],
)
def test_text_around_placeholders_is_kept_as_written(template, expected):
    with connection.cursor() as cursor:
        cursor.execute("SELECT rule_render_message(%s, 'd', 't', '42'::jsonb, 'gt', '30'::jsonb)", [template])
        assert cursor.fetchone()[0] == expected


def breaching_batch(devices, readings_per_device, breaches_per_device):
    """Readings 1 s apart per device; the last ``breaches_per_device`` of each are hot (the last one hottest)."""
    rows = []
    for device in devices:
        for i in range(readings_per_device):
            hot = i >= readings_per_device - breaches_per_device
            rows.append((device.pk, at(i), {"temperature": 40 + i if hot else 20, "humidity": 50}))
    return rows


def test_a_batch_with_dedupe_makes_one_event_per_rule_and_device():
    rule = RuleFactory()
    devices = DeviceFactory.create_batch(10)
    assert insert_readings(breaching_batch(devices, 100, 5)) == 1000
    events = Event.objects.filter(rule=rule)
    assert events.count() == 10
    for event in events:
        assert event.occurrence_count == 5
        assert event.triggered_at == at(95)
        assert event.trigger_values["value"] == 135
        assert event.last_triggered_at == at(99)
        assert event.last_values["value"] == 139


def test_a_batch_without_dedupe_makes_one_event_per_breaching_reading():
    rule = RuleFactory(dedupe=False)
    assert insert_readings(breaching_batch(DeviceFactory.create_batch(10), 100, 5)) == 1000
    events = Event.objects.filter(rule=rule)
    assert events.count() == 50
    assert {event.occurrence_count for event in events} == {1}
    assert not events.exclude(status=EventStatus.OPEN).exists()


def test_a_repeat_bumps_the_unresolved_event_without_reopening_it():
    RuleFactory()
    device = DeviceFactory()
    insert_readings([(device.pk, at(0), {"temperature": 31})])
    Event.objects.update(status=EventStatus.ACKNOWLEDGED, acknowledged_at=at(1))
    insert_readings([(device.pk, at(10), {"temperature": 35}), (device.pk, at(5), {"temperature": 33})])
    event = Event.objects.get()
    assert event.status == EventStatus.ACKNOWLEDGED
    assert event.occurrence_count == 3
    assert (event.triggered_at, event.trigger_values["value"]) == (at(0), 31)
    assert (event.last_triggered_at, event.last_values["value"]) == (at(10), 35)


def test_a_late_reading_counts_but_does_not_replace_the_last_values():
    RuleFactory()
    device = DeviceFactory()
    insert_readings([(device.pk, at(10), {"temperature": 35})])
    insert_readings([(device.pk, at(5), {"temperature": 33})])
    event = Event.objects.get()
    assert event.occurrence_count == 2
    assert (event.last_triggered_at, event.last_values["value"]) == (at(10), 35)


def test_after_resolution_a_breach_opens_a_new_event():
    RuleFactory()
    device = DeviceFactory()
    insert_readings([(device.pk, at(0), {"temperature": 31})])
    Event.objects.update(status=EventStatus.RESOLVED, resolved_at=at(1))
    insert_readings([(device.pk, at(10), {"temperature": 31})])
    assert list(Event.objects.order_by("id").values_list("status", "occurrence_count")) == [
        ("resolved", 1),
        ("open", 1),
    ]


def test_duplicate_readings_fire_nothing():
    RuleFactory()
    device = DeviceFactory()
    insert_readings([(device.pk, at(0), {"temperature": 31})])
    assert insert_readings([(device.pk, at(0), {"temperature": 99})]) == 0
    assert Event.objects.get().occurrence_count == 1


def test_a_plain_sql_insert_writes_events():
    RuleFactory(name="hot")
    device = DeviceFactory()
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO telemetry (device_id, time, metrics)
               VALUES (%s, now(), '{"temperature": 45}'), (%s, now() - interval '1 s', '{"temperature": 10}')""",
            [device.pk, device.pk],
        )
    assert list(Event.objects.values_list("rule_name", "device", "occurrence_count")) == [("hot", device.pk, 1)]


def test_pgtrigger_ignore_skips_evaluation():
    RuleFactory()
    device = DeviceFactory()
    with pgtrigger.ignore("telemetry.Telemetry:telemetry_evaluate_rules"):
        insert_readings([(device.pk, at(0), {"temperature": 99})])
    assert Telemetry.objects.count() == 1
    assert not Event.objects.exists()


def test_a_failing_event_insert_fails_the_readings_too():
    RuleFactory(message_template="refused {value}")
    device = DeviceFactory()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE events ADD CONSTRAINT test_refuse CHECK (message NOT LIKE 'refused%%')")
    with pytest.raises(IntegrityError, match="test_refuse"), transaction.atomic():
        insert_readings([(device.pk, at(0), {"temperature": 20}), (device.pk, at(1), {"temperature": 99})])
    assert not Telemetry.objects.exists()
    assert not Event.objects.exists()


def test_new_events_queue_one_notification_per_enabled_channel_and_bumps_none():
    log, email = NotificationChannelFactory(), NotificationChannelFactory(kind="email", target="ops@example.com")
    off = NotificationChannelFactory(enabled=False)
    RuleFactory(channels=[log, email, off])
    RuleFactory(name="silent", threshold=35)
    device = DeviceFactory(name="boiler")
    insert_readings([(device.pk, at(0), {"temperature": 31})])
    event = Event.objects.get()
    notifications = Notification.objects.filter(event=event)
    assert {n.channel_id for n in notifications} == {log.pk, email.pk}
    for notification in notifications:
        assert (notification.status, notification.attempts, notification.sent_at) == ("pending", 0, None)
        assert notification.payload["event_id"] == event.pk
        assert notification.payload["message"] == event.message
        assert notification.payload["device_name"] == "boiler"
    insert_readings([(device.pk, at(1), {"temperature": 40})])  # bumps the first rule, opens "silent"
    assert Notification.objects.count() == 2


def test_auto_resolve_resolves_when_a_newer_reading_no_longer_matches():
    rule = RuleFactory(auto_resolve=True)
    sticky = RuleFactory(name="sticky")
    device = DeviceFactory()
    insert_readings([(device.pk, at(10), {"temperature": 31})])
    insert_readings([(device.pk, at(5), {"temperature": 20})])  # older than the breach: no effect
    insert_readings([(device.pk, at(20), {"humidity": 20})])  # no temperature: no information
    assert Event.objects.get(rule=rule).status == EventStatus.OPEN
    insert_readings([(device.pk, at(30), {"temperature": 25})])
    resolved = Event.objects.get(rule=rule)
    assert resolved.status == EventStatus.RESOLVED
    assert resolved.resolved_at is not None
    assert resolved.resolved_by is None
    assert "no longer matches" in resolved.resolved_note
    assert Event.objects.get(rule=sticky).status == EventStatus.OPEN


def test_auto_resolve_within_one_batch_follows_the_newest_reading():
    rule = RuleFactory(auto_resolve=True)
    cleared, still_hot = DeviceFactory(), DeviceFactory()
    insert_readings(
        [
            (cleared.pk, at(0), {"temperature": 31}),
            (cleared.pk, at(1), {"temperature": 20}),
            (still_hot.pk, at(0), {"temperature": 20}),
            (still_hot.pk, at(1), {"temperature": 31}),
        ]
    )
    assert Event.objects.get(rule=rule, device=cleared).status == EventStatus.RESOLVED
    assert Event.objects.get(rule=rule, device=still_hot).status == EventStatus.OPEN


def test_a_deleted_rule_leaves_its_events_and_a_deleted_device_takes_them_along():
    channel = NotificationChannelFactory()
    rule = RuleFactory(name="hot", channels=[channel])
    kept, deleted = DeviceFactory(), DeviceFactory()
    insert_readings([(kept.pk, at(0), {"temperature": 31}), (deleted.pk, at(0), {"temperature": 31})])
    rule.delete()
    assert Rule.objects.count() == 0
    assert set(Event.objects.values_list("rule", "rule_name")) == {(None, "hot")}
    deleted_pk = deleted.pk
    deleted.delete()
    assert list(Event.objects.values_list("device", flat=True)) == [kept.pk]
    assert Notification.objects.count() == 1
    assert not Telemetry.objects.filter(device_id=deleted_pk).exists()


def insert_concurrently(batches):
    """Inserts each batch on a connection of its own, all starting together; returns the errors raised."""
    barrier, errors = threading.Barrier(len(batches)), []

    def run(batch):
        conn = connect_separately()
        try:
            with conn, conn.cursor() as cursor:  # commits
                barrier.wait()
                insert_readings(batch, cursor=cursor)
        except Exception as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_share_one_event_per_rule_and_device():
    rule = RuleFactory()
    devices = DeviceFactory.create_batch(10)
    batches = [
        breaching_batch(devices, 100, 5),
        # The other connection's readings are 1000 s later, its devices in the opposite order.
        [(d, t + timedelta(seconds=1000), m) for d, t, m in reversed(breaching_batch(devices, 100, 5))],
    ]
    assert insert_concurrently(batches) == []
    assert Telemetry.objects.count() == 2000
    events = Event.objects.filter(rule=rule)
    assert events.count() == 10
    assert {event.occurrence_count for event in events} == {10}
    assert {event.last_triggered_at for event in events} == {at(1099)}


@pytest.mark.django_db(transaction=True)
def test_notify_is_sent_only_when_notifications_were_queued():
    RuleFactory(channels=[NotificationChannelFactory()])
    RuleFactory(name="no channels", metric="humidity")
    device = DeviceFactory()
    listener = connect_separately()
    listener.autocommit = True
    try:
        with listener.cursor() as cursor:
            cursor.execute("LISTEN notifications_pending")

        def notified(wait):
            """The channels notified within ``wait`` seconds (delivery to a listener is asynchronous)."""
            select.select([listener], [], [], wait)
            listener.poll()
            channels = [notify.channel for notify in listener.notifies]
            listener.notifies.clear()
            return channels

        insert_readings([(device.pk, at(0), {"humidity": 99})])  # an event without channels
        assert notified(0.5) == []
        insert_readings([(device.pk, at(1), {"temperature": 99})])
        assert notified(5) == ["notifications_pending"]
        insert_readings([(device.pk, at(2), {"temperature": 99})])  # a bump: nothing new to deliver
        assert notified(0.5) == []
    finally:
        listener.close()


# The tighter plan (docs/rules.md, "How the trigger evaluates a batch"): strict prefilter, first()/last() per
# (rule, device), the auto_resolve statement skipped without enabled auto_resolve rules, events at fillfactor 80.


def test_without_enabled_rules_the_trigger_stores_readings_and_does_nothing_else():
    RuleFactory(enabled=False, auto_resolve=True)
    device = DeviceFactory()
    with connection.cursor() as cursor:
        cursor.execute("SELECT rules_prefilter()")
        assert cursor.fetchone() == (None,)
    assert insert_readings([(device.pk, at(0), {"temperature": 99}), (device.pk, at(1), {"temperature": 10})]) == 2
    assert not Event.objects.exists()


def test_a_disabled_auto_resolve_rule_resolves_nothing_while_other_rules_are_evaluated():
    resolving = RuleFactory(auto_resolve=True)
    RuleFactory(name="humid", metric="humidity", threshold=80)
    device = DeviceFactory()
    insert_readings([(device.pk, at(0), {"temperature": 31})])
    Rule.objects.filter(pk=resolving.pk).update(enabled=False)
    # No enabled auto_resolve rule: the auto_resolve statement is skipped, and the open event stays open.
    insert_readings([(device.pk, at(1), {"temperature": 20, "humidity": 90})])
    assert Event.objects.get(rule=resolving).status == EventStatus.OPEN
    assert Event.objects.filter(rule__name="humid").count() == 1
    Rule.objects.filter(pk=resolving.pk).update(enabled=True)
    insert_readings([(device.pk, at(2), {"temperature": 20})])
    assert Event.objects.get(rule=resolving).status == EventStatus.RESOLVED


def test_the_strict_prefilter_lets_through_every_reading_that_matches_a_rule():
    hot, faulty = RuleFactory(name="hot"), RuleFactory(name="faulty", metric="state", operator="eq", threshold="fault")
    device = DeviceFactory()
    with connection.cursor() as cursor:
        cursor.execute("SELECT rules_prefilter()::text")
        assert cursor.fetchone()[0].startswith("strict ")
    insert_readings(
        [
            # Another metric of a different type, or missing, does not hide the one that matches.
            (device.pk, at(0), {"temperature": "very hot", "state": "fault"}),
            (device.pk, at(1), {"state": "ok", "temperature": 45}),
            (device.pk, at(2), {"humidity": 10, "state": "fault"}),
            # Arrays and objects never match (lax jsonpath would unwrap [50]; rule_matches refuses it either way).
            (device.pk, at(3), {"temperature": [50], "state": ["fault"]}),
            (device.pk, at(4), {"temperature": {"value": 50}}),
        ]
    )
    assert Event.objects.get(rule=hot).occurrence_count == 1
    assert Event.objects.get(rule=faulty).occurrence_count == 2
    assert Event.objects.get(rule=faulty).last_triggered_at == at(2)


def test_first_and_last_values_follow_reading_time_not_batch_order():
    RuleFactory()
    device = DeviceFactory()
    insert_readings(
        [
            (device.pk, at(10), {"temperature": 35}),
            (device.pk, at(5), {"temperature": 33}),
            (device.pk, at(20), {"temperature": 20}),
            (device.pk, at(15), {"temperature": 37}),
        ]
    )
    event = Event.objects.get()
    assert event.occurrence_count == 3
    assert (event.triggered_at, event.trigger_values["value"]) == (at(5), 33)
    assert (event.last_triggered_at, event.last_values["value"]) == (at(15), 37)
    assert event.message.endswith("is 33 (> 30)")


def test_events_leave_room_for_hot_bumps():
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE oid = 'public.events'::regclass")
        assert cursor.fetchone()[0] == ["fillfactor=80"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_bumping_and_creating_events_in_opposite_orders_do_not_deadlock():
    rule, other = RuleFactory(), RuleFactory(name="humid", metric="humidity", threshold=80)
    devices = DeviceFactory.create_batch(20)
    # Half the devices already have an unresolved event for each rule (some acknowledged): those are bumped; the
    # other half get new events, created by whichever connection comes first and bumped by the other.
    insert_readings([(d.pk, at(0), {"temperature": 99, "humidity": 99}) for d in devices[:10]])
    Event.objects.filter(device__in=devices[:5]).update(status=EventStatus.ACKNOWLEDGED, acknowledged_at=at(1))

    def batch(offset, order):
        return [(d.pk, at(offset + i), {"temperature": 40 + i, "humidity": 90}) for d in order for i in range(3)]

    batches = [batch(100, devices), batch(200, list(reversed(devices)))]
    assert insert_concurrently(batches) == []
    for r in (rule, other):
        events = Event.objects.filter(rule=r)
        assert events.count() == 20
        assert {e.occurrence_count for e in events.filter(device__in=devices[:10])} == {7}
        assert {e.occurrence_count for e in events.filter(device__in=devices[10:])} == {6}
        assert set(events.filter(device__in=devices[:5]).values_list("status", flat=True)) == {"acknowledged"}
        assert set(events.filter(device__in=devices[5:]).values_list("status", flat=True)) == {"open"}
        assert {e.last_triggered_at for e in events} == {at(202)}
