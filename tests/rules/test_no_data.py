"""Issue 14: no-data rules. rules_evaluate_no_data(evaluated_at) opens one event per silence (driven here by its
time parameter, and once for real by the worker loop); the rule trigger ends a silence with a newer reading."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pgtrigger
import pytest
from django.db import IntegrityError, connection, transaction

from iothub.worker import Registry, Worker
from rules.models import NOTIFICATION_PAYLOAD_KEYS, Event, EventStatus, Notification, RuleState
from rules.services import event_resolve, no_data_rules_evaluate
from tests.conftest import connect_separately
from tests.factories import DeviceFactory, DeviceTypeFactory, NotificationChannelFactory, RuleFactory

from .conftest import insert_readings

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SILENCE = 300


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def no_data_rule(**fields):
    return RuleFactory(
        **{
            "kind": "no_data",
            "metric": "temperature",
            "operator": None,
            "threshold": None,
            "no_data_seconds": SILENCE,
            "message_template": "{device_name}: silent for {silent_for} ({metric}; last seen {last_seen})",
            **fields,
        }
    )


def active_since(device, moment, cursor=None):
    """Pretend the device became active at ``moment`` (status_changed_at is otherwise the real now())."""
    sql, params = "UPDATE devices SET status_changed_at = %s WHERE id = %s", [moment, device.pk]
    if cursor is not None:
        cursor.execute(sql, params)
        return
    with connection.cursor() as own:
        own.execute(sql, params)


def device_since_t0(**fields):
    device = DeviceFactory(**fields)
    active_since(device, T0)
    return device


def evaluate(seconds):
    return no_data_rules_evaluate(at=at(seconds))


def unresolved(rule):
    return list(Event.objects.filter(rule=rule, status__in=[EventStatus.OPEN, EventStatus.ACKNOWLEDGED]))


# Opening ---------------------------------------------------------------------------------------------------------


def test_the_event_opens_when_the_silence_reaches_no_data_seconds():
    channel = NotificationChannelFactory()
    rule = no_data_rule(channels=[channel])
    device = device_since_t0(name="pump")
    insert_readings([(device.pk, at(10), {"temperature": 21})])

    assert evaluate(10 + SILENCE - 1).events_opened == 0
    assert evaluate(10 + SILENCE).events_opened == 1
    event = Event.objects.get()
    assert (event.rule, event.device, event.status, event.severity) == (rule, device, "open", "warning")
    assert event.triggered_at == event.last_triggered_at == at(10 + SILENCE)
    assert event.message == "pump: silent for 5m (temperature; last seen 2026-11-27T12:00:10Z)"
    assert event.trigger_values == {
        "metric": "temperature",
        "last_seen": "2026-11-27T12:00:10Z",
        "silent_since": "2026-11-27T12:00:10Z",
        "no_data_seconds": SILENCE,
    }
    notification = Notification.objects.get()
    assert (notification.channel, notification.status) == (channel, "pending")
    assert set(notification.payload) == set(NOTIFICATION_PAYLOAD_KEYS)
    assert notification.payload["message"] == event.message
    assert notification.payload["triggered_at"] == "2026-11-27T12:05:10Z"


@pytest.mark.parametrize("phase", [0, 7, 29])
def test_detection_latency_is_at_most_the_period_plus_no_data_seconds(phase):
    """The worker's cycles every 30 s, starting at any phase: the first cycle at or after the silence reaching
    no_data_seconds opens the event."""
    no_data_rule()
    device = device_since_t0()
    last_reading = 10
    insert_readings([(device.pk, at(last_reading), {"temperature": 21})])
    cycle = phase
    while not Event.objects.exists():
        assert cycle <= last_reading + 30 + SILENCE, "no event within period + no_data_seconds"
        evaluate(cycle)
        cycle += 30
    detected_at = cycle - 30
    assert last_reading + SILENCE <= detected_at <= last_reading + SILENCE + 30
    assert Event.objects.get().triggered_at == at(last_reading + SILENCE)


def test_a_device_that_never_sent_anything_counts_from_its_creation():
    no_data_rule(metric=None)
    device = device_since_t0(name="mute")
    assert evaluate(SILENCE - 1).events_opened == 0
    assert evaluate(SILENCE).events_opened == 1
    event = Event.objects.get(device=device)
    assert event.message == "mute: silent for 5m (any reading; last seen never)"
    assert event.trigger_values["last_seen"] is None
    assert event.trigger_values["silent_since"] == "2026-11-27T12:00:00Z"


def test_repeated_cycles_keep_one_event_per_silence_without_bumping_it():
    no_data_rule(channels=[NotificationChannelFactory()])
    device_since_t0()
    for seconds in (SILENCE, SILENCE + 30, SILENCE + 60, 10 * SILENCE):
        evaluate(seconds)
    event = Event.objects.get()
    assert event.occurrence_count == 1
    assert Notification.objects.count() == 1


def test_a_silence_resolved_by_hand_opens_nothing_more_until_data_ends_it():
    rule = no_data_rule()
    device = device_since_t0()
    evaluate(SILENCE)
    event_resolve(event=Event.objects.get(), user=None, note="known outage")
    evaluate(2 * SILENCE)
    assert Event.objects.count() == 1
    insert_readings([(device.pk, at(2 * SILENCE + 1), {"temperature": 20})])
    evaluate(3 * SILENCE + 2)  # a new silence after that reading
    assert Event.objects.filter(rule=rule).count() == 2


@pytest.mark.parametrize("metric", ["temperature", None])
def test_metric_specific_rules_watch_their_metric_and_any_reading_rules_every_reading(metric):
    no_data_rule(metric=metric)
    device = device_since_t0()
    insert_readings([(device.pk, at(seconds), {"humidity": 40}) for seconds in range(0, 2 * SILENCE, 60)])
    evaluate(2 * SILENCE)
    assert Event.objects.count() == (1 if metric else 0)


def test_the_targets_of_a_no_data_rule():
    thermometers = DeviceTypeFactory(name="thermometer", metrics=[{"name": "temperature"}])
    typed, other = device_since_t0(device_type=thermometers), device_since_t0()
    single = device_since_t0(device_type=DeviceTypeFactory(name="meter", metrics=[{"name": "temperature"}]))
    for_type = no_data_rule(device_type=thermometers)
    for_device = no_data_rule(device=single)
    for_all = no_data_rule()
    evaluate(SILENCE)
    assert set(Event.objects.values_list("rule", "device")) == {
        (for_type.pk, typed.pk),
        (for_device.pk, single.pk),
        (for_all.pk, typed.pk),
        (for_all.pk, other.pk),
        (for_all.pk, single.pk),
    }


def test_disabled_rules_open_nothing():
    no_data_rule(enabled=False)
    device_since_t0()
    assert evaluate(10 * SILENCE).events_opened == 0


# Resolving -------------------------------------------------------------------------------------------------------


def test_a_newer_reading_resolves_the_event_with_the_reading_and_a_later_silence_opens_a_new_one():
    rule = no_data_rule()
    device = device_since_t0()
    evaluate(SILENCE)
    insert_readings([(device.pk, at(SILENCE + 5), {"temperature": 19})])
    event = Event.objects.get()
    assert (event.status, event.resolved_by) == ("resolved", None)
    assert event.resolved_note == "Resolved automatically: a reading arrived at 2026-11-27T12:05:05Z."
    assert RuleState.objects.get(rule=rule, device=device).silent_alarm_at is None
    evaluate(2 * SILENCE + 5)
    events = list(Event.objects.filter(rule=rule).order_by("triggered_at"))
    assert [(e.status, e.occurrence_count, e.triggered_at) for e in events] == [
        ("resolved", 1, at(SILENCE)),
        ("open", 1, at(2 * SILENCE + 5)),
    ]


def test_a_late_reading_from_inside_the_silence_resolves_nothing():
    no_data_rule()
    device = device_since_t0()
    insert_readings([(device.pk, at(10), {"temperature": 21})])
    evaluate(SILENCE + 60)  # the silence reached 300 s at 12:05:10
    insert_readings([(device.pk, at(200), {"temperature": 21})])  # late: older than the alarm
    assert Event.objects.get().status == "open"
    insert_readings([(device.pk, at(SILENCE + 11), {"temperature": 21})])
    assert Event.objects.get().status == "resolved"


def test_only_a_reading_with_the_metric_ends_a_metric_specific_silence():
    no_data_rule()
    device = device_since_t0()
    evaluate(SILENCE)
    insert_readings([(device.pk, at(SILENCE + 1), {"humidity": 40})])
    assert Event.objects.get().status == "open"
    insert_readings([(device.pk, at(SILENCE + 2), {"humidity": 40, "temperature": 20})])
    assert Event.objects.get().status == "resolved"


def test_any_reading_ends_the_silence_of_a_rule_without_a_metric():
    no_data_rule(metric=None)
    device = device_since_t0()
    evaluate(SILENCE)
    insert_readings([(device.pk, at(SILENCE + 1), {"humidity": 40})])
    assert Event.objects.get().status == "resolved"


def test_a_batch_resolves_with_its_first_reading_newer_than_the_alarm():
    no_data_rule()
    device = device_since_t0()
    evaluate(SILENCE)
    insert_readings(
        [(device.pk, at(SILENCE + s), {"temperature": 20}) for s in (30, 10, 20)]
        + [(device.pk, at(5), {"temperature": 1})]
    )
    assert Event.objects.get().resolved_note == "Resolved automatically: a reading arrived at 2026-11-27T12:05:10Z."


def test_an_acknowledged_event_resolves_too():
    no_data_rule()
    device = device_since_t0()
    evaluate(SILENCE)
    Event.objects.update(status="acknowledged", acknowledged_at=at(SILENCE))
    insert_readings([(device.pk, at(SILENCE + 1), {"temperature": 20})])
    assert Event.objects.get().status == "resolved"


def test_a_reading_the_trigger_did_not_see_ends_the_silence_at_the_next_cycle_once():
    """Like a reading committed while the silence was being opened (here: stored with the trigger ignored), the
    next evaluation ends the silence with the first reading after the alarm. It looks once per silence."""
    no_data_rule()
    device = device_since_t0()
    evaluate(SILENCE)
    with pgtrigger.ignore("telemetry.Telemetry:telemetry_evaluate_rules"):
        insert_readings(
            [(device.pk, at(SILENCE + 7), {"temperature": 20}), (device.pk, at(SILENCE + 9), {"temperature": 20})]
        )
    assert Event.objects.get().status == "open"
    assert evaluate(SILENCE + 30) == (0, 1)
    event = Event.objects.get()
    assert event.resolved_note == "Resolved automatically: a reading arrived at 2026-11-27T12:05:07Z."
    evaluate(2 * SILENCE + 10)  # a new silence; its next evaluation looks and finds nothing
    assert evaluate(2 * SILENCE + 40) == (0, 0)
    with pgtrigger.ignore("telemetry.Telemetry:telemetry_evaluate_rules"):
        insert_readings([(device.pk, at(2 * SILENCE + 50), {"temperature": 20})])
    assert evaluate(2 * SILENCE + 70) == (0, 0)  # looked already: a backfill ends nothing
    assert RuleState.objects.get(device=device).silence_rechecked is True


def test_a_reading_ends_the_silence_of_a_rule_disabled_since():
    rule = no_data_rule()
    device = device_since_t0()
    evaluate(SILENCE)
    rule.enabled = False
    rule.save()
    insert_readings([(device.pk, at(SILENCE + 1), {"temperature": 20})])
    assert Event.objects.get().status == "resolved"


# Device status and deletion --------------------------------------------------------------------------------------


def test_devices_not_active_are_skipped_and_a_reactivated_one_counts_from_its_reactivation():
    no_data_rule()
    device = device_since_t0()
    insert_readings([(device.pk, at(0), {"temperature": 20})])
    for status in ("inactive", "maintenance", "retired"):
        device.status = status
        device.save()
        assert evaluate(10 * SILENCE).events_opened == 0
    device.status = "active"
    device.save()
    device.refresh_from_db()
    reactivated = device.status_changed_at
    assert reactivated > at(10 * SILENCE)  # the real now(), set by the database
    assert no_data_rules_evaluate(at=reactivated + timedelta(seconds=SILENCE - 1)).events_opened == 0
    assert no_data_rules_evaluate(at=reactivated + timedelta(seconds=SILENCE)).events_opened == 1
    event = Event.objects.get()
    assert event.trigger_values["last_seen"] == "2026-11-27T12:00:00Z"  # what was last seen...
    assert event.triggered_at == reactivated + timedelta(seconds=SILENCE)  # ...but silent since it became active


def test_status_changed_at_is_set_by_the_database_for_every_writer():
    device = DeviceFactory()
    active_since(device, T0)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE devices SET location = 'roof' WHERE id = %s", [device.pk])
        cursor.execute("SELECT status_changed_at FROM devices WHERE id = %s", [device.pk])
        assert cursor.fetchone()[0] == T0  # other columns leave it
        cursor.execute(
            "UPDATE devices SET status = 'maintenance' WHERE id = %s RETURNING status_changed_at", [device.pk]
        )
        changed = cursor.fetchone()[0]
        cursor.execute("SELECT statement_timestamp()")
        assert T0 < changed < cursor.fetchone()[0]


def test_a_device_deleted_while_silent_takes_its_silence_and_the_next_cycle_is_quiet():
    rule = no_data_rule()
    device, other = device_since_t0(), device_since_t0()
    evaluate(SILENCE)
    assert Event.objects.count() == 2
    device.delete()
    assert not RuleState.objects.filter(device_id=device.pk).exists()
    assert not Event.objects.filter(device_id=device.pk).exists()
    assert evaluate(2 * SILENCE) == (0, 0)
    assert [e.device_id for e in unresolved(rule)] == [other.pk]


# Validation in the database ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"no_data_seconds": None},
        {"no_data_seconds": 0},
        {"operator": "gt"},
        {"threshold": 5},
        {"for_seconds": 60},
        {"clear_threshold": 5},
        {"auto_resolve": True},
    ],
)
def test_the_database_refuses_a_no_data_rule_with_threshold_fields(fields):
    # (clear_threshold meets rules_clear_threshold_valid first: it needs auto_resolve and an operator.)
    with pytest.raises(IntegrityError, match=r"rules_kind_fields|rules_clear_threshold_valid"), transaction.atomic():
        no_data_rule(**fields)


def test_the_database_refuses_a_threshold_rule_with_no_data_seconds_or_without_its_fields():
    for fields in ({"no_data_seconds": 60}, {"metric": None}, {"operator": None}, {"threshold": None}):
        with pytest.raises(IntegrityError, match="rules_kind_fields"), transaction.atomic():
            RuleFactory(**fields)


# The trigger's guard and the hidden state ---------------------------------------------------------------------------


def test_rule_evaluation_state_says_whether_a_no_data_rule_exists():
    def stored():
        with connection.cursor() as cursor:
            cursor.execute("SELECT s.no_data, rules_with_no_data() FROM rule_evaluation_state s")
            value, computed = cursor.fetchone()
        assert value == computed
        return value

    assert stored() is False
    RuleFactory()
    assert stored() is False
    rule = no_data_rule(enabled=False)
    assert stored() is True  # disabled: a reading still ends its silences
    rule.delete()
    assert stored() is False


def test_readings_without_an_open_silence_write_no_state():
    no_data_rule()
    device = device_since_t0()
    insert_readings([(device.pk, at(s), {"temperature": 20}) for s in range(0, 600, 10)])
    evaluate(600)
    assert not RuleState.objects.exists()


def test_the_hidden_state_view_shows_pending_durations_and_silences():
    slow = RuleFactory(name="slow", for_seconds=60)
    silent = no_data_rule(name="silent", metric="humidity")
    device = device_since_t0(name="pump")
    insert_readings([(device.pk, at(0), {"temperature": 31}), (device.pk, at(20), {"temperature": 32})])
    evaluate(SILENCE)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rule_id, rule_name, rule_kind, device_name, state, since, until, readings FROM rule_hidden_state"
            " ORDER BY rule_name"
        )
        rows = cursor.fetchall()
    assert rows == [
        (silent.pk, "silent", "no_data", "pump", "silent", at(0), at(SILENCE), None),
        (slow.pk, "slow", "threshold", "pump", "pending", at(0), at(60), 2),
    ]


# Concurrency -----------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_evaluations_and_readings_keep_one_open_event_per_rule_and_device():
    """Two evaluations of the same moments at once, and a writer ending silences meanwhile: never two unresolved
    events for a (rule, device), never an error, and each silence's event resolved by the reading after it."""
    rules = [no_data_rule(name=f"silence {i}", metric=metric) for i, metric in enumerate(("temperature", None))]
    devices = [device_since_t0() for _ in range(5)]
    rounds, errors = 40, []
    barrier = threading.Barrier(3, timeout=30)

    def evaluator():
        conn = connect_separately()
        try:
            for round_ in range(rounds):
                barrier.wait()
                with conn, conn.cursor() as cursor:
                    cursor.execute("SELECT * FROM rules_evaluate_no_data(%s)", [at((round_ + 1) * SILENCE)])
        except Exception as exc:
            errors.append(exc)
        finally:
            conn.close()

    def writer():
        conn = connect_separately()
        try:
            for round_ in range(rounds):
                barrier.wait()
                # Every other round, a reading just after the round's alarm moment ends the silences.
                if round_ % 2:
                    with conn, conn.cursor() as cursor:
                        moment = at((round_ + 1) * SILENCE + 1)
                        insert_readings([(d.pk, moment, {"temperature": 1}) for d in devices], cursor)
        except Exception as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=target) for target in (evaluator, evaluator, writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    no_data_rules_evaluate(at=at((rounds + 1) * SILENCE + 2))  # ends silences a racing reading left open
    for rule in rules:
        for device in devices:
            events = Event.objects.filter(rule=rule, device=device)
            assert events.filter(status__in=["open", "acknowledged"]).count() <= 1
            assert all(event.occurrence_count == 1 for event in events)


@pytest.mark.django_db(transaction=True)
def test_a_rule_edited_while_readings_arrive_and_evaluations_run():
    rule = no_data_rule()
    devices = [device_since_t0() for _ in range(4)]
    stop, errors = threading.Event(), []

    def edit():
        conn = connect_separately()
        try:
            n = 0
            while not stop.is_set():
                n += 1
                with conn, conn.cursor() as cursor:
                    cursor.execute(
                        "UPDATE rules SET no_data_seconds = %s, metric = %s WHERE id = %s",
                        [SILENCE + n % 7, ("temperature", None)[n % 2], rule.pk],
                    )
        except Exception as exc:
            errors.append(exc)
        finally:
            conn.close()

    def ingest():
        conn = connect_separately()
        try:
            for i in range(200):
                with conn, conn.cursor() as cursor:
                    device = devices[i % len(devices)]
                    insert_readings([(device.pk, at(i * 40), {"temperature": i})], cursor)
        except Exception as exc:
            errors.append(exc)
        finally:
            conn.close()

    def evaluate_loop():
        conn = connect_separately()
        try:
            for i in range(60):
                with conn, conn.cursor() as cursor:
                    cursor.execute("SELECT * FROM rules_evaluate_no_data(%s)", [at(i * 150)])
        except Exception as exc:
            errors.append(exc)
        finally:
            conn.close()

    editor = threading.Thread(target=edit)
    workers = [threading.Thread(target=ingest), threading.Thread(target=evaluate_loop)]
    editor.start()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=120)
    stop.set()
    editor.join(timeout=30)
    assert errors == []
    for device in devices:
        assert Event.objects.filter(rule=rule, device=device, status__in=["open", "acknowledged"]).count() <= 1


# Through the worker, for real ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_worker_opens_the_event_within_its_period_plus_no_data_seconds_and_a_reading_resolves_it():
    period, silence = 0.5, 1
    rule = no_data_rule(no_data_seconds=silence)
    device = DeviceFactory()  # active since now(): its creation
    registry = Registry()
    registry.periodic("evaluate_no_data_rules", every=timedelta(seconds=period), run_at_start=True)(
        no_data_rules_evaluate
    )
    worker = Worker(registry, poll_interval=60)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        device.refresh_from_db()
        deadline = time.monotonic() + 10
        while not Event.objects.filter(rule=rule).exists():
            assert time.monotonic() < deadline, "no event within 10 s"
            time.sleep(0.05)
        event = Event.objects.get(rule=rule)
        latency = (event.created_at - device.status_changed_at).total_seconds()
        assert silence <= latency <= silence + period + 0.5  # + scheduling slack on a loaded machine
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO telemetry (device_id, time, metrics) VALUES (%s, now(), '{\"temperature\": 20}')",
                [device.pk],
            )
        event.refresh_from_db()
        assert event.status == "resolved"
    finally:
        worker.stop()
        thread.join(timeout=10)
