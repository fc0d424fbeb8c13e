"""rule_evaluation_state: the enabled rules as telemetry_evaluate_rules reads them, kept current by the trigger on
rules in the transaction that changes them (sql/triggers/rules_refresh_evaluation_state.sql)."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from rules.models import Event, Rule
from tests.conftest import connect_separately
from tests.factories import DeviceFactory, DeviceTypeFactory, RuleFactory

from .conftest import insert_readings

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def state(cursor=None):
    """(prefilter as text, auto_resolving) from the row, and the same computed from the rules now."""
    sql = """
        SELECT s.prefilter::text, s.auto_resolving,
            rules_prefilter()::text, rules_auto_resolving()
        FROM rule_evaluation_state s
    """
    if cursor is None:
        with connection.cursor() as own:
            own.execute(sql)
            row = own.fetchone()
    else:
        cursor.execute(sql)
        row = cursor.fetchone()
    assert row is not None, "rule_evaluation_state has no row"
    return row[:2], row[2:]


def assert_current():
    stored, computed = state()
    assert stored == computed
    return stored


def test_the_row_follows_every_kind_of_rule_change():
    assert assert_current() == (None, False)
    hot = RuleFactory(name="hot", threshold=50)
    assert assert_current() == ('strict ($."temperature" >= 50)', False)
    RuleFactory(name="humid", metric="humidity", threshold=80, auto_resolve=True)
    assert assert_current()[1] is True
    Rule.objects.filter(pk=hot.pk).update(threshold=40)
    assert "40" in assert_current()[0]
    Rule.objects.filter(name="humid").update(enabled=False)
    assert assert_current() == ('strict ($."temperature" >= 40)', False)
    hot.delete()
    assert assert_current() == (None, False)


def test_deleting_a_device_drops_its_rules_from_the_row():
    device = DeviceFactory(device_type=DeviceTypeFactory(metrics=[{"name": "vibration"}]))
    RuleFactory(name="device rule", metric="vibration", threshold=3, device=device)
    assert "vibration" in assert_current()[0]
    device.delete()  # the rule goes by ON DELETE CASCADE, a statement on rules of the database's own
    assert assert_current() == (None, False)


@pytest.mark.django_db(transaction=True)  # TRUNCATE refuses tables with pending (deferred) trigger events
def test_truncating_rules_clears_the_row():
    RuleFactory()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE rules CASCADE")
    assert assert_current() == (None, False)


def test_a_rule_fires_from_the_next_statement_on_and_stops_when_disabled():
    device = DeviceFactory()
    insert_readings([(device.pk, T0, {"temperature": 99})])
    rule = RuleFactory()
    insert_readings([(device.pk, T0 + timedelta(seconds=1), {"temperature": 99})])
    assert Event.objects.get(rule=rule).occurrence_count == 1
    Rule.objects.filter(pk=rule.pk).update(enabled=False)
    insert_readings([(device.pk, T0 + timedelta(seconds=2), {"temperature": 99})])
    assert Event.objects.get(rule=rule).occurrence_count == 1


def test_without_the_row_rules_are_still_evaluated_and_the_next_rule_change_restores_it():
    device = DeviceFactory()
    rule = RuleFactory(auto_resolve=True)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM rule_evaluation_state")
    insert_readings([(device.pk, T0, {"temperature": 99})])
    assert Event.objects.get(rule=rule).status == "open"
    insert_readings([(device.pk, T0 + timedelta(seconds=1), {"temperature": 10})])
    assert Event.objects.get(rule=rule).status == "resolved"
    RuleFactory(name="other", metric="humidity")
    assert "humidity" in assert_current()[0]


def test_a_reading_that_matches_no_rule_skips_the_matching_statement():
    RuleFactory(threshold=50)
    device = DeviceFactory()
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_xact_user_tables WHERE relname = 'events'")
        before = cursor.fetchone()[0]
        insert_readings([(device.pk, T0, {"temperature": 20})], cursor=cursor)
        insert_readings([(device.pk, T0 + timedelta(seconds=1), {"temperature": 60})], cursor=cursor)
        cursor.execute("SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_xact_user_tables WHERE relname = 'events'")
        assert cursor.fetchone()[0] - before == 1
    assert Event.objects.count() == 1


def _waiting_for_a_lock(cursor, pid):
    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'", [pid])
    return cursor.fetchone()[0]


INSERT_RULE = """
    INSERT INTO rules (name, description, metric, operator, threshold, severity, message_template, enabled, dedupe,
        auto_resolve, created_at, updated_at)
    VALUES (%s, '', %s, 'gt', '50', 'warning', '{metric} is {value}', true, true, false, now(), now())
"""


@pytest.mark.django_db(transaction=True)
def test_concurrent_rule_edits_leave_the_values_of_all_rules():
    """Two transactions create a rule each; the second refreshes after the first commits and sees its rule. (Without
    the lock, the second would compute from a snapshot without the first rule and overwrite the row with that.)"""
    first, second, observer = connect_separately(), connect_separately(), connect_separately()
    observer.autocommit = True
    errors = []
    try:
        with first.cursor() as cursor:
            cursor.execute(INSERT_RULE, ["hot", "temperature"])  # holds the lock until commit

        def create_second():
            try:
                with second.cursor() as cursor:
                    cursor.execute(INSERT_RULE, ["humid", "humidity"])
                second.commit()
            except Exception as exc:
                errors.append(exc)

        thread = threading.Thread(target=create_second)
        thread.start()
        with observer.cursor() as cursor:
            deadline = time.monotonic() + 10
            while not _waiting_for_a_lock(cursor, second.get_backend_pid()):
                assert time.monotonic() < deadline, "the second rule edit never waited for the first"
                time.sleep(0.02)
            # Meanwhile readings are evaluated without waiting, against the rules committed so far (none).
            insert_readings([(DeviceFactory().pk, T0, {"temperature": 99})], cursor=cursor)
        first.commit()
        thread.join(timeout=30)
        assert errors == []
        stored = assert_current()
        assert "temperature" in stored[0]
        assert "humidity" in stored[0]
    finally:
        for conn in (first, second, observer):
            conn.close()
    assert Event.objects.count() == 0


def test_with_duration_follows_the_enabled_rules_with_for_seconds():
    def with_duration():
        with connection.cursor() as cursor:
            cursor.execute("SELECT s.with_duration, rules_with_duration() FROM rule_evaluation_state s")
            stored, computed = cursor.fetchone()
        assert stored == computed
        return stored

    assert with_duration() is False
    slow = RuleFactory(for_seconds=60)
    assert with_duration() is True
    Rule.objects.filter(pk=slow.pk).update(enabled=False)
    assert with_duration() is False
