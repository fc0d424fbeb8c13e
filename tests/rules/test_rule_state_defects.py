"""Issue 12: rule state follows reading time, one lock order, typed clearing, UTC in what the database writes.

Each test here fails on the trigger before rule_states (sql/triggers/telemetry_evaluate_rules.plpgsql)."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from rules.models import Event, EventStatus, Notification
from tests.conftest import connect_separately
from tests.factories import DeviceFactory, NotificationChannelFactory, RuleFactory

from .conftest import insert_readings

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def status(rule, device):
    return list(Event.objects.filter(rule=rule, device=device).order_by("id").values_list("status", flat=True))


# 12.2 -----------------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_single_readings_bumping_and_auto_resolving_never_deadlock():
    """Two connections insert one reading each per round, at once: 40 (clears the auto-resolving rules, bumps the
    others) and 60 (bumps or reopens everything). Before, the bump of one event and the auto-resolve UPDATE of the
    other took row locks in opposite orders: 40P01 within a few rounds."""
    resolving_hot = RuleFactory(name="A: hot, auto-resolving", threshold=50, auto_resolve=True)
    RuleFactory(name="B: warm", threshold=30)
    RuleFactory(name="C: hot, hysteresis-free, auto-resolving", threshold=45, auto_resolve=True)
    RuleFactory(name="D: very warm", threshold=35)
    device = DeviceFactory()
    insert_readings([(device.pk, at(0), {"temperature": 60})])  # every rule has an open event
    rounds, errors = 300, []
    barrier = threading.Barrier(2, timeout=30)

    def run(value, offset):
        conn = connect_separately()
        try:
            for round_ in range(rounds):
                barrier.wait()
                try:
                    with conn, conn.cursor() as cursor:  # one transaction per reading, like the ingest API
                        # Which of the two is newer alternates, so 40 sometimes clears and sometimes comes late.
                        newer = (round_ % 2) == offset
                        insert_readings([(device.pk, at(10 + 2 * round_ + newer), {"temperature": value})], cursor)
                except Exception as exc:  # every failure is the finding
                    errors.append((round_, value, exc))
        except threading.BrokenBarrierError:
            pass
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=args) for args in ((40, 0), (60, 1))]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in threads), "the rounds did not finish within 4 minutes"
    assert errors == [], f"{len(errors)} failed inserts, first: {errors[:1]}"
    assert time.monotonic() - began < 240
    # Every round ended with 60 or 40 as the newest reading: at most one unresolved event per rule, none lost.
    for rule_name in ("A: hot, auto-resolving", "B: warm", "C: hot, hysteresis-free, auto-resolving", "D: very warm"):
        assert Event.objects.filter(rule__name=rule_name, status__in=["open", "acknowledged"]).count() <= 1
    assert Event.objects.filter(rule__name="B: warm").get().occurrence_count == 1 + 2 * rounds
    newest_is_hot = (rounds - 1) % 2 == 1
    assert Event.objects.filter(rule=resolving_hot, status="open").exists() is newest_is_hot


# 12.4 -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("error_value", ["ERR", None, True, {"value": 20}])
def test_a_value_of_another_json_type_neither_matches_nor_resolves(error_value):
    rule = RuleFactory(auto_resolve=True)
    device = DeviceFactory()
    insert_readings([(device.pk, at(0), {"temperature": 45})])
    insert_readings([(device.pk, at(10), {"temperature": error_value})])
    insert_readings([(device.pk, at(20), {"humidity": 10})])  # no temperature: no information either
    assert status(rule, device) == ["open"]
    assert Event.objects.get(rule=rule).occurrence_count == 1
    insert_readings([(device.pk, at(30), {"temperature": 20})])
    assert status(rule, device) == ["resolved"]


def test_within_one_batch_an_error_value_after_the_breach_resolves_nothing():
    rule = RuleFactory(auto_resolve=True)
    device = DeviceFactory()
    insert_readings([(device.pk, at(0), {"temperature": 45}), (device.pk, at(1), {"temperature": "ERR"})])
    assert status(rule, device) == ["open"]


# 12.5 -----------------------------------------------------------------------------------------------------------


def test_a_late_breach_older_than_the_clearing_reading_opens_nothing():
    rule = RuleFactory(auto_resolve=True, channels=[NotificationChannelFactory()])
    device = DeviceFactory()
    insert_readings([(device.pk, at(-600), {"temperature": 45})])  # t-10 min: opens
    insert_readings([(device.pk, at(-300), {"temperature": 20})])  # t-5 min: resolves
    assert status(rule, device) == ["resolved"]
    insert_readings([(device.pk, at(-420), {"temperature": 50})])  # t-7 min, late: the condition had cleared since
    assert status(rule, device) == ["resolved"]
    assert Notification.objects.count() == 1
    insert_readings([(device.pk, at(-200), {"temperature": 50})])  # newer than the clearing reading: opens
    assert status(rule, device) == ["resolved", "open"]
    assert Notification.objects.count() == 2


def test_a_late_clearing_reading_older_than_the_breach_resolves_nothing():
    rule = RuleFactory(auto_resolve=True)
    device = DeviceFactory()
    insert_readings([(device.pk, at(0), {"temperature": 45})])
    insert_readings([(device.pk, at(-5), {"temperature": 20})])
    assert status(rule, device) == ["open"]


@pytest.mark.parametrize("auto_resolve", [False, True])
def test_a_late_breach_older_than_the_event_becomes_its_first_reading(auto_resolve):
    rule = RuleFactory(auto_resolve=auto_resolve, message_template="{value}")
    device = DeviceFactory()
    insert_readings([(device.pk, at(100), {"temperature": 35})])
    insert_readings([(device.pk, at(50), {"temperature": 40})])  # late, older than triggered_at
    event = Event.objects.get(rule=rule)
    assert event.occurrence_count == 2
    assert (event.triggered_at, event.trigger_values["value"], event.message) == (at(50), 40, "40")
    assert (event.last_triggered_at, event.last_values["value"]) == (at(100), 35)
    insert_readings([(device.pk, at(200), {"temperature": 36}), (device.pk, at(20), {"temperature": 41})])
    event.refresh_from_db()
    assert (event.occurrence_count, event.triggered_at, event.trigger_values["value"]) == (4, at(20), 41)
    assert (event.last_triggered_at, event.last_values["value"]) == (at(200), 36)


# 12.7 -----------------------------------------------------------------------------------------------------------


def test_payloads_and_notes_are_utc_whatever_the_session_time_zone():
    RuleFactory(auto_resolve=True, channels=[NotificationChannelFactory()])
    device = DeviceFactory()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL TimeZone = 'America/New_York'")  # until the test's transaction ends
        insert_readings([(device.pk, at(0.25), {"temperature": 45})], cursor)
        insert_readings([(device.pk, at(60), {"temperature": 20})], cursor)
        cursor.execute("SELECT payload ->> 'triggered_at' FROM notifications")
        assert cursor.fetchone()[0] == "2026-11-27T12:00:00.250000Z"
        cursor.execute("SELECT resolved_note FROM events")
        assert cursor.fetchone()[0] == "Resolved automatically: the reading at 2026-11-27T12:01:00Z no longer matches."
    payload = Notification.objects.get().payload
    assert payload["triggered_at"] == "2026-11-27T12:00:00.250000Z"
    assert Event.objects.get().status == EventStatus.RESOLVED
