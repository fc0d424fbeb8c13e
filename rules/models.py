"""Rules, the events they raise and the notifications those events send.

Rules are evaluated by the database (the ``telemetry_evaluate_rules`` trigger, sql/triggers/), so every invariant a
writer must respect is a constraint here, not Python. Foreign keys declared with ``db_constraint=False`` are
re-declared in sql/history/rules/0001_initial.sql with their ON DELETE action, so a DELETE from psql cascades
exactly like one from Django, without Django loading the rows.
"""

import math
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Now

from rules.triggers import EventStatusTransition
from telemetry.models import METRIC_NAME_REGEX, Device, DeviceType

MESSAGE_PLACEHOLDERS = ("device_name", "metric", "value", "operator", "threshold")
# A no-data rule's message: {metric} is "any reading" for a rule without one; {last_seen} the newest reading's time
# (of the metric) or "never"; {silent_for} how long the device had been silent when the silence was found.
NO_DATA_MESSAGE_PLACEHOLDERS = ("device_name", "metric", "last_seen", "silent_for")
# A string threshold is compared with string metric values, which ingest limits to 256 characters.
MAX_STRING_THRESHOLD = 256


def _jsonb_type_in(field, *json_types):
    """A CHECK condition: ``jsonb_typeof(field) IN json_types``."""
    return models.lookups.In(
        models.Func(models.F(field), function="jsonb_typeof", output_field=models.TextField()), json_types
    )


class Operator(models.TextChoices):
    GT = "gt", "greater than (>)"
    LT = "lt", "less than (<)"
    GTE = "gte", "greater than or equal (>=)"
    LTE = "lte", "less than or equal (<=)"
    EQ = "eq", "equal (=)"
    NEQ = "neq", "not equal (!=)"


# gt/lt/gte/lte compare numbers; eq/neq numbers, booleans or strings of the same JSON type.
ORDERING_OPERATORS = (Operator.GT, Operator.LT, Operator.GTE, Operator.LTE)
EQUALITY_OPERATORS = (Operator.EQ, Operator.NEQ)
EQUALITY_THRESHOLD_TYPES = ("number", "boolean", "string")
# Where a clear threshold (hysteresis) lies: at or below the threshold for gt/gte, at or above it for lt/lte. An event
# resolves on a reading that does not match the rule with the clear threshold in place of the threshold.
CLEAR_BELOW_OPERATORS = (Operator.GT, Operator.GTE)
CLEAR_ABOVE_OPERATORS = (Operator.LT, Operator.LTE)


class RuleKind(models.TextChoices):
    THRESHOLD = "threshold", "threshold: a reading's value crosses a threshold"
    NO_DATA = "no_data", "no data: no reading (of the metric) for a while"


# The fields only one kind has (rules_kind_fields CHECK): the other kind leaves them empty.
THRESHOLD_ONLY_FIELDS = ("operator", "threshold", "for_seconds", "max_gap_seconds", "clear_threshold")
NO_DATA_ONLY_FIELDS = ("no_data_seconds",)


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


# How serious each severity is: what "ordering by severity" sorts by (the API's ?ordering=severity, Admin's lists),
# never the names' alphabetical order.
SEVERITY_RANK = {Severity.INFO: 1, Severity.WARNING: 2, Severity.CRITICAL: 3}


def severity_rank(field="severity"):
    """The rank of ``field`` (a severity) as a SQL CASE expression, to sort by in the database."""
    return models.Case(
        *(models.When(**{field: severity}, then=models.Value(rank)) for severity, rank in SEVERITY_RANK.items()),
        output_field=models.IntegerField(),
    )


class ChannelKind(models.TextChoices):
    LOG = "log", "Log"
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class NotificationChannel(models.Model):
    """Where notifications go: the application log, an email address, or a webhook URL (``target``)."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    # An email address for email, a URL for webhook; unused (may be empty) for log.
    target = models.CharField(max_length=500, blank=True, default="")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "notification_channels"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=ChannelKind.values), name="notification_channels_kind_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(kind=ChannelKind.LOG) | ~models.Q(target=""),
                name="notification_channels_target_required",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.kind})"


DEFAULT_MESSAGE_TEMPLATE = "{device_name}: {metric} is {value} ({operator} {threshold})"
DEFAULT_NO_DATA_MESSAGE_TEMPLATE = "{device_name}: silent for {silent_for} ({metric}; last seen {last_seen})"


class Rule(models.Model):
    """A condition on one metric of the readings of one device, one device type, or every device (neither).

    ``threshold`` rules are evaluated by the rule trigger on every insert; ``no_data`` rules by
    ``rules_evaluate_no_data()``, which the worker calls on a schedule (docs/rules.md, "No-data rules").
    """

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True, default="")
    kind = models.CharField(
        max_length=16,
        choices=RuleKind.choices,
        default=RuleKind.THRESHOLD,
        # For SQL writers too: a rule inserted without a kind is a threshold rule, as before kinds existed.
        db_default=RuleKind.THRESHOLD,
        help_text=(
            "threshold: an event when a reading's value matches the condition. no data: an event when no reading "
            "(with the metric, or none at all without one) has arrived for no_data_seconds."
        ),
    )
    device_type = models.ForeignKey(DeviceType, null=True, blank=True, on_delete=models.PROTECT, related_name="rules")
    # ON DELETE CASCADE in SQL: deleting a device deletes its device-specific rules.
    device = models.ForeignKey(
        Device, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="rules"
    )
    # NULL (not ""; the API's null) only for a no-data rule watching any reading. The CHECKs and SQL read NULL as
    # "none", so the two kinds' fields stay NULL when they don't apply.
    metric = models.CharField(  # noqa: DJ001
        max_length=64,
        null=True,
        blank=True,
        help_text=(
            "A top-level key of the readings' metrics. For a device or device type, one its type declares. A no-data "
            "rule without a metric watches any reading."
        ),
    )
    # Threshold rules only (rules_kind_fields).
    operator = models.CharField(max_length=8, choices=Operator.choices, null=True, blank=True)  # noqa: DJ001
    # A JSON scalar: a number for gt/lt/gte/lte; a number, boolean or string for eq/neq. Threshold rules only.
    threshold = models.JSONField(null=True, blank=True)
    # No-data rules only: how long a device may stay silent before the event opens.
    no_data_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=(
            "No-data rules: open an event when no reading (with the metric) has arrived for this many seconds, "
            "counted from the device's newest such reading or from when it last became active, whichever is later. "
            "A reading newer than the silence resolves the event."
        ),
    )
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    message_template = models.CharField(max_length=1000, default=DEFAULT_MESSAGE_TEMPLATE)
    enabled = models.BooleanField(default=True)
    dedupe = models.BooleanField(
        default=True,
        help_text=(
            "At most one unresolved event per device: repeated matches bump its occurrence count and last values "
            "instead of adding events. Off: every matching reading is an event of its own."
        ),
    )
    auto_resolve = models.BooleanField(
        default=False,
        help_text=(
            "Threshold rules: a newer reading that no longer matches (see the clear threshold) resolves the event. "
            "Off: events stay until someone resolves them. (No-data events always resolve on a newer reading.)"
        ),
    )
    # Duration: the event opens once the readings have matched for this long without a non-matching reading between.
    for_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=(
            "Open the event only once the metric has matched for this many seconds: from the first matching reading "
            "to a later one, with no non-matching reading between (the event's time is the first one's). Empty: at "
            "the first matching reading. Needs dedupe."
        ),
    )
    max_gap_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=(
            "With a duration: two consecutive matching readings further apart than this break the matching span "
            "(the next one starts a new span). Empty: gaps never break it."
        ),
    )
    # Hysteresis: auto_resolve resolves only on a reading past this threshold (a number on the far side).
    clear_threshold = models.JSONField(
        null=True,
        blank=True,
        help_text=(
            "With auto_resolve and gt/gte/lt/lte: the event resolves only on a reading that no longer matches this "
            "threshold instead (gt 80, clear 75: resolved at 75 or below; lt 10, clear 12: at 12 or above). At or "
            "below the threshold for gt/gte, at or above it for lt/lte. Empty: any reading that no longer matches."
        ),
    )
    channels = models.ManyToManyField(NotificationChannel, through="RuleChannel", blank=True, related_name="rules")
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "rules"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(device_type__isnull=True) | models.Q(device__isnull=True),
                name="rules_one_target",
            ),
            models.CheckConstraint(condition=models.Q(metric__regex=METRIC_NAME_REGEX), name="rules_metric_name"),
            # Each kind has its own fields and leaves the other kind's empty; a no-data rule always resolves itself.
            models.CheckConstraint(
                condition=(
                    models.Q(
                        kind=RuleKind.THRESHOLD,
                        metric__isnull=False,
                        operator__isnull=False,
                        threshold__isnull=False,
                        no_data_seconds__isnull=True,
                    )
                    | models.Q(
                        kind=RuleKind.NO_DATA,
                        no_data_seconds__isnull=False,
                        no_data_seconds__gt=0,
                        operator__isnull=True,
                        threshold__isnull=True,
                        for_seconds__isnull=True,
                        max_gap_seconds__isnull=True,
                        clear_threshold__isnull=True,
                        auto_resolve=False,
                    )
                ),
                name="rules_kind_fields",
            ),
            models.CheckConstraint(condition=models.Q(operator__in=Operator.values), name="rules_operator_valid"),
            models.CheckConstraint(condition=models.Q(severity__in=Severity.values), name="rules_severity_valid"),
            models.CheckConstraint(
                # A no-data rule has no threshold (rules_kind_fields); said here too so that Django's validation of
                # the constraint, which reads NULL as false, agrees with the database.
                condition=(
                    models.Q(kind=RuleKind.NO_DATA)
                    | models.Q(_jsonb_type_in("threshold", "number"), operator__in=ORDERING_OPERATORS)
                    | models.Q(_jsonb_type_in("threshold", *EQUALITY_THRESHOLD_TYPES), operator__in=EQUALITY_OPERATORS)
                ),
                name="rules_threshold_type",
            ),
            models.CheckConstraint(condition=~models.Q(message_template=""), name="rules_message_template_not_empty"),
            models.CheckConstraint(
                condition=models.Q(for_seconds__isnull=True) | models.Q(for_seconds__gt=0, dedupe=True),
                name="rules_for_seconds_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(max_gap_seconds__isnull=True)
                | models.Q(max_gap_seconds__gt=0, for_seconds__isnull=False),
                name="rules_max_gap_seconds_valid",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(clear_threshold__isnull=True)
                    | models.Q(
                        _jsonb_type_in("clear_threshold", "number"),
                        auto_resolve=True,
                        clear_threshold__lte=models.F("threshold"),
                        operator__in=CLEAR_BELOW_OPERATORS,
                    )
                    | models.Q(
                        _jsonb_type_in("clear_threshold", "number"),
                        auto_resolve=True,
                        clear_threshold__gte=models.F("threshold"),
                        operator__in=CLEAR_ABOVE_OPERATORS,
                    )
                ),
                name="rules_clear_threshold_valid",
            ),
        ]
        indexes = [
            # The trigger looks up the enabled rules of the metrics present in a batch.
            models.Index(fields=["metric"], condition=models.Q(enabled=True), name="rules_enabled_metric"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_no_data(self):
        return self.kind == RuleKind.NO_DATA

    @property
    def target_label(self):
        if self.device_id:
            return f"device {self.device}"
        if self.device_type_id:
            return f"device type {self.device_type}"
        return "every device"

    def apply_kind_defaults(self):
        """A rule switched to the other kind with the first kind's default message gets the new kind's default."""
        defaults = {RuleKind.THRESHOLD: DEFAULT_MESSAGE_TEMPLATE, RuleKind.NO_DATA: DEFAULT_NO_DATA_MESSAGE_TEMPLATE}
        if self.kind in defaults and self.message_template in defaults.values():
            self.message_template = defaults[self.kind]

    def clean(self):
        """The checks the database makes, with messages an admin understands (Admin and API both call this).

        Gives a rule the default message of its kind first (``apply_kind_defaults``).
        """
        self.apply_kind_defaults()
        errors = {}
        if self.device_id and self.device_type_id:
            errors["device"] = (
                "A rule targets one device or one device type, not both: clear one of them "
                "(clear both to target every device)."
            )
        if self.metric and not re.fullmatch(METRIC_NAME_REGEX, self.metric):
            errors["metric"] = (
                "A metric is the top-level key of a reading's metrics: it starts with a letter or '_' and has at "
                "most 64 letters, digits, '_', '.' or '-'."
            )
        elif self.metric and "device" not in errors:
            undeclared = undeclared_metric_problem(self)
            if undeclared:
                errors["metric"] = undeclared
        if self.kind == RuleKind.NO_DATA:
            errors |= self._no_data_problems()
            placeholders = NO_DATA_MESSAGE_PLACEHOLDERS
        else:
            errors |= self._threshold_problems()
            placeholders = MESSAGE_PLACEHOLDERS
        unknown = sorted(set(re.findall(r"\{(\w*)\}", self.message_template or "")) - set(placeholders))
        if unknown:
            errors["message_template"] = (
                f"Unknown placeholder {', '.join('{' + name + '}' for name in unknown)}; "
                f"use {', '.join('{' + name + '}' for name in placeholders)}."
            )
        if errors:
            raise ValidationError(errors)

    def _threshold_problems(self):
        errors = {}
        if self.kind != RuleKind.THRESHOLD:
            return {"kind": f"A rule's kind is one of {', '.join(RuleKind.values)}."}
        if self.no_data_seconds is not None:
            errors["no_data_seconds"] = "Only no-data rules wait for silence: leave it empty, or make the rule no_data."
        if not self.metric:
            errors["metric"] = "A threshold rule compares one metric: name it."
        if not self.operator:
            errors["operator"] = f"A threshold rule needs an operator: one of {', '.join(Operator.values)}."
        if self.threshold is None:
            threshold_error = (
                "A threshold rule needs a threshold: a number (30, 21.5), or for eq/neq true/false or a string."
            )
        else:
            threshold_error = self.operator and threshold_problem(self.operator, self.threshold)
        if threshold_error:
            errors["threshold"] = threshold_error
        clear_error = clear_threshold_problem(self.operator, self.threshold, self.clear_threshold, self.auto_resolve)
        if clear_error and not threshold_error:
            errors["clear_threshold"] = clear_error
        if self.for_seconds is not None and self.for_seconds <= 0:
            errors["for_seconds"] = "A duration is a positive number of seconds (leave it empty to fire at once)."
        elif self.for_seconds is not None and not self.dedupe:
            errors["for_seconds"] = "A duration needs dedupe: one event per matching span."
        if self.max_gap_seconds is not None and self.max_gap_seconds <= 0:
            errors["max_gap_seconds"] = "A maximum gap is a positive number of seconds (leave it empty for none)."
        elif self.max_gap_seconds is not None and self.for_seconds is None:
            errors["max_gap_seconds"] = "A maximum gap only applies to a rule with a duration (for_seconds)."
        return errors

    def _no_data_problems(self):
        errors = {}
        if self.no_data_seconds is None or self.no_data_seconds <= 0:
            errors["no_data_seconds"] = (
                "A no-data rule needs the silence it waits for: a positive number of seconds, like 300."
            )
        for name in THRESHOLD_ONLY_FIELDS:
            if getattr(self, name) is not None:
                errors[name] = f"A no-data rule has no {name}: leave it empty (it belongs to threshold rules)."
        if self.auto_resolve:
            errors["auto_resolve"] = (
                "A no-data event always resolves on a newer reading: leave auto_resolve off (threshold rules only)."
            )
        return errors


def undeclared_metric_problem(rule):
    """Why ``rule.metric`` is refused for the rule's target, or None: a rule for a device or a device type names a
    metric its type declares (a rule for every device may name any metric)."""
    device_type = rule.device_type if rule.device_type_id else (rule.device.device_type if rule.device_id else None)
    if device_type is None:
        return None
    declared = [entry.get("name") for entry in device_type.metrics if isinstance(entry, dict)]
    if rule.metric in declared:
        return None
    if not declared:
        return (
            f"The device type {device_type.name} declares no metrics: declare {rule.metric!r} on it first, or "
            "target every device."
        )
    return (
        f"The device type {device_type.name} declares no metric {rule.metric!r}: use one of "
        f"{', '.join(sorted(declared))} (or declare it on the type first)."
    )


def threshold_problem(operator, threshold):
    """Why ``threshold`` can't be used with ``operator``, or None (mirrors the rules_threshold_type CHECK)."""
    is_number = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
    if is_number and not math.isfinite(threshold):
        return "The threshold must be a finite number."
    if operator in ORDERING_OPERATORS:
        if not is_number:
            return f"The operator {operator} compares numbers: the threshold must be a number, like 30 or 21.5."
    elif operator in EQUALITY_OPERATORS:
        if not (is_number or isinstance(threshold, (bool, str))):
            return (
                f"The operator {operator} compares a number, a boolean or a string: the threshold must be one of "
                'those, like 21, true or "open" (not a list, an object or null).'
            )
        if isinstance(threshold, str) and len(threshold) > MAX_STRING_THRESHOLD:
            return f"A string threshold has at most {MAX_STRING_THRESHOLD} characters, like metric values."
        if isinstance(threshold, str) and "\x00" in threshold:  # jsonb can't store it, nor can a metric hold it
            return "A string threshold may not contain U+0000."
    return None


def clear_threshold_problem(operator, threshold, clear_threshold, auto_resolve):
    """Why ``clear_threshold`` can't go with the rest of the rule, or None (mirrors rules_clear_threshold_valid)."""
    if clear_threshold is None:
        return None
    if not auto_resolve:
        return "A clear threshold decides when auto_resolve resolves an event: turn auto_resolve on, or leave it empty."
    if operator not in CLEAR_BELOW_OPERATORS + CLEAR_ABOVE_OPERATORS:
        return f"The operator {operator} has no clear threshold: only gt, gte, lt and lte do (leave it empty)."
    if not isinstance(clear_threshold, (int, float)) or isinstance(clear_threshold, bool):
        return "The clear threshold must be a number, like 75 or 21.5."
    if not math.isfinite(clear_threshold):
        return "The clear threshold must be a finite number."
    if operator in CLEAR_BELOW_OPERATORS and clear_threshold > threshold:
        return f"For {operator} the clear threshold is at or below the threshold ({threshold})."
    if operator in CLEAR_ABOVE_OPERATORS and clear_threshold < threshold:
        return f"For {operator} the clear threshold is at or above the threshold ({threshold})."
    return None


class RuleChannel(models.Model):
    """A rule's notification channel. Both foreign keys cascade in SQL."""

    rule = models.ForeignKey(Rule, on_delete=models.DO_NOTHING, db_constraint=False, related_name="rule_channels")
    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.DO_NOTHING, db_constraint=False, related_name="rule_channels"
    )

    class Meta:
        db_table = "rule_channels"
        constraints = [models.UniqueConstraint(fields=["rule", "channel"], name="rule_channels_unique")]

    def __str__(self):
        # Admin labels each channel row of a rule with this.
        return str(self.channel)


class RuleState(models.Model):
    """What the readings said so far for one (rule, device) of a rule with auto_resolve or for_seconds, or the open
    silence of a no-data rule.

    Written by the ``telemetry_evaluate_rules`` trigger, for pairs with a matching reading, an open auto-resolving
    event or a pending span; it locks a statement's rows in (rule, device) order before touching their events
    (docs/rules.md, "Rule state"). Readings at or before ``cleared_at`` never open, extend or resolve anything.
    No-data rules: ``rules_evaluate_no_data()`` sets ``silent_since``/``silent_alarm_at`` when it opens a silence's
    event, and ``rules_end_silences()`` (called by the trigger) clears them when a newer reading arrives.
    """

    pk = models.CompositePrimaryKey("rule", "device")
    # Both ON DELETE CASCADE in SQL (sql/history/rules/0012_rule_states.sql).
    rule = models.ForeignKey(Rule, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    # The newest reading the state took into account.
    changed_at = models.DateTimeField(null=True)
    # The newest non-matching reading that ended a matching span or resolved an event.
    cleared_at = models.DateTimeField(null=True)
    # The matching span in progress (pending duration, or the open event's): its first and newest matching readings
    # (time and value) and how many matched.
    span_started_at = models.DateTimeField(null=True)
    span_first_value = models.JSONField(null=True)
    span_last_at = models.DateTimeField(null=True)
    span_last_value = models.JSONField(null=True)
    span_count = models.IntegerField(db_default=0)
    # An unresolved event of this auto_resolve rule waits for its clearing reading.
    event_open = models.BooleanField(db_default=False)
    # No-data rules: the open silence — since when the device has sent nothing (of the metric), and when that
    # reached no_data_seconds (the event's triggered_at). A reading newer than silent_alarm_at ends it.
    silent_since = models.DateTimeField(null=True)
    silent_alarm_at = models.DateTimeField(null=True)
    # The evaluation after the one that opened the silence has looked once for a reading the trigger could not
    # see (committed while the silence was being opened).
    silence_rechecked = models.BooleanField(db_default=False)

    class Meta:
        db_table = "rule_states"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(span_started_at__isnull=True, span_last_at__isnull=True)
                | models.Q(span_last_at__gte=models.F("span_started_at")),
                name="rule_states_span_complete",
            ),
            models.CheckConstraint(
                condition=models.Q(silent_since__isnull=True, silent_alarm_at__isnull=True)
                | models.Q(silent_alarm_at__gte=models.F("silent_since")),
                name="rule_states_silence_complete",
            ),
        ]
        indexes = [
            # The trigger's cheap check for a statement without candidates: has one of its devices a pair that needs
            # its non-matching readings too?
            models.Index(
                fields=["device"],
                condition=models.Q(event_open=True) | models.Q(span_started_at__isnull=False),
                name="rule_states_watched_device",
            ),
            # The trigger's one probe for no-data rules: has one of the statement's devices an open silence?
            models.Index(
                fields=["device"], condition=models.Q(silent_alarm_at__isnull=False), name="rule_states_silent_device"
            ),
        ]

    def __str__(self):
        return f"rule {self.rule_id} on {self.device_id}"


class EventStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


UNRESOLVED_STATUSES = (EventStatus.OPEN, EventStatus.ACKNOWLEDGED)
# Where an event may go from each status; resolved is final. The services follow it, and so does the database's
# event_status_transition trigger (sql/triggers/event_status_transition.plpgsql; tests/rules/test_sql_parity.py).
EVENT_TRANSITIONS = {
    EventStatus.OPEN: (EventStatus.ACKNOWLEDGED, EventStatus.RESOLVED),
    EventStatus.ACKNOWLEDGED: (EventStatus.RESOLVED,),
    EventStatus.RESOLVED: (),
}


class Event(models.Model):
    """A rule firing for a device; written by the ``telemetry_evaluate_rules`` trigger only.

    With the rule's ``dedupe`` (copied to the event, since an index can't join), at most one unresolved event
    exists per (rule, device): repeats bump ``occurrence_count``, ``last_triggered_at`` and ``last_values``.
    """

    # ON DELETE SET NULL in SQL: a deleted rule leaves its events, which keep its name.
    rule = models.ForeignKey(
        Rule, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="events"
    )
    rule_name = models.CharField(max_length=200)
    # ON DELETE CASCADE in SQL.
    device = models.ForeignKey(Device, on_delete=models.DO_NOTHING, db_constraint=False, related_name="events")
    dedupe = models.BooleanField()
    severity = models.CharField(max_length=16, choices=Severity.choices)
    message = models.TextField()
    # The first matching reading's time, and the newest one's.
    triggered_at = models.DateTimeField()
    last_triggered_at = models.DateTimeField()
    occurrence_count = models.IntegerField(default=1)
    # {"metric", "value", "operator", "threshold"} of the first matching reading, and of the newest one.
    trigger_values = models.JSONField()
    last_values = models.JSONField()
    status = models.CharField(max_length=16, choices=EventStatus.choices, default=EventStatus.OPEN)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_note = models.TextField(blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)
    # NULL with resolved_at set: resolved automatically (auto_resolve), or by a user since deleted.
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        db_table = "events"
        ordering = ["-triggered_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=EventStatus.values), name="events_status_valid"),
            models.CheckConstraint(condition=models.Q(severity__in=Severity.values), name="events_severity_valid"),
            models.CheckConstraint(
                condition=models.Q(occurrence_count__gte=1), name="events_occurrence_count_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(last_triggered_at__gte=models.F("triggered_at")),
                name="events_last_triggered_after_first",
            ),
            models.CheckConstraint(
                condition=models.Q(_jsonb_type_in("trigger_values", "object"), _jsonb_type_in("last_values", "object")),
                name="events_values_objects",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(status=EventStatus.RESOLVED, resolved_at__isnull=False)
                    | (~models.Q(status=EventStatus.RESOLVED) & models.Q(resolved_at__isnull=True))
                ),
                name="events_resolved_at_iff_resolved",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=EventStatus.ACKNOWLEDGED) | models.Q(acknowledged_at__isnull=False),
                name="events_acknowledged_has_time",
            ),
            # The dedupe guarantee; the trigger's INSERT … ON CONFLICT names this predicate.
            models.UniqueConstraint(
                fields=["rule", "device"],
                condition=models.Q(dedupe=True, status__in=UNRESOLVED_STATUSES),
                name="events_one_unresolved_per_rule_device",
            ),
        ]
        indexes = [
            models.Index(fields=["-triggered_at"], name="events_triggered_at"),
            models.Index(fields=["device", "-triggered_at"], name="events_device_triggered_at"),
            # auto_resolve finds the unresolved events of a (rule, device), deduped or not.
            models.Index(
                fields=["rule", "device"],
                condition=models.Q(status__in=UNRESOLVED_STATUSES),
                name="events_unresolved_rule_device",
            ),
        ]
        triggers = [EventStatusTransition(name="event_status_transition")]

    def __str__(self):
        # Admin's titles, breadcrumbs and history: the device's name, not its UUID (list the device with the event).
        return f"{self.rule_name} on {self.device.name} at {self.triggered_at:%Y-%m-%d %H:%M:%S} UTC"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


# The keys of a notification's payload, as the database writes them (sql/functions/notification_payload.sql, for the
# rule trigger and the no-data evaluation) and rules.notifications delivers them (tests/rules/test_sql_parity.py
# keeps the two equal).
NOTIFICATION_PAYLOAD_KEYS = (
    "event_id",
    "rule_id",
    "rule_name",
    "device_id",
    "device_name",
    "severity",
    "message",
    "triggered_at",
    "trigger_values",
)


class Notification(models.Model):
    """One delivery of an event through a channel: inserted ``pending`` by the trigger, delivered by the worker.

    ``payload`` is what is delivered (event id, rule, device, severity, message, times), frozen when the event is
    created so a later edit of the rule or device does not change a notification already queued.
    """

    # Both ON DELETE CASCADE in SQL.
    event = models.ForeignKey(Event, on_delete=models.DO_NOTHING, db_constraint=False, related_name="notifications")
    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.DO_NOTHING, db_constraint=False, related_name="notifications"
    )
    status = models.CharField(max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    payload = models.JSONField(default=dict)
    attempts = models.IntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    # A webhook's request {"method", "url", "body", "sent"}: what was POSTed, or, with webhooks disabled, what
    # would have been (sent: false), so the outbox can be inspected without calling anything.
    request = models.JSONField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(db_default=Now())
    # When the worker claimed the row (status sending): a claim older than a timeout is a crashed worker's.
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "notifications"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=NotificationStatus.values), name="notifications_status_valid"
            ),
            models.CheckConstraint(condition=models.Q(attempts__gte=0), name="notifications_attempts_non_negative"),
            models.CheckConstraint(
                condition=~models.Q(status=NotificationStatus.SENT) | models.Q(sent_at__isnull=False),
                name="notifications_sent_has_time",
            ),
            models.CheckConstraint(
                condition=models.Q(_jsonb_type_in("payload", "object")), name="notifications_payload_object"
            ),
            models.UniqueConstraint(fields=["event", "channel"], name="notifications_one_per_event_channel"),
        ]
        indexes = [
            # The worker's claim: due pending rows, oldest first.
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status=NotificationStatus.PENDING),
                name="notifications_due",
            ),
        ]

    def __str__(self):
        return f"notification {self.pk} of event {self.event_id} via {self.channel_id} ({self.status})"
