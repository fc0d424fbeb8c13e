from django.core.validators import MinValueValidator
from django.db import models
from django.db.models.functions import Now

from rules.triggers import EvaluateMergedRules, EvaluateRules

# A metric's name: a top-level key of a reading, a declared metric, a rule's metric. \A and \Z mean the same in
# Python and in PostgreSQL regular expressions; "$" would let a trailing newline through in Python.
METRIC_NAME_REGEX = r"\A[A-Za-z_][A-Za-z0-9_.-]{0,63}\Z"


STRICT_WITHOUT_METRICS = (
    "A type with strict metrics declares at least one metric: without any, every reading of its devices is refused."
)

# A device whose newest reading is older than this many of its type's expected intervals is shown offline.
OFFLINE_AFTER_INTERVALS = 2


def _jsonb_type_is(field, json_type):
    """A CHECK condition: ``jsonb_typeof(field) = json_type``."""
    return models.lookups.Exact(
        models.Func(models.F(field), function="jsonb_typeof", output_field=models.TextField()), json_type
    )


class DeviceType(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    # Documents what devices of this type send ([{"name", "unit", "description"}]); restricts ingest only when
    # strict_metrics is set.
    metrics = models.JSONField(default=list, blank=True)
    strict_metrics = models.BooleanField(
        "strict metrics",
        default=False,
        db_default=False,
        help_text=(
            "Refuse readings that carry a metric this type does not declare: the whole request is refused, each "
            "undeclared metric named. Off: the declared metrics document what devices send, and readings may carry "
            "others too (a device that gained a sensor before its type was updated loses nothing)."
        ),
    )
    # Display only: Admin's online/offline. The alarms for silent devices are no-data rules, with their own threshold.
    expected_interval_seconds = models.PositiveIntegerField(
        "expected interval (seconds)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=(
            "How often its devices send a reading, in seconds. Admin shows a device offline once its newest reading "
            f"is older than {OFFLINE_AFTER_INTERVALS} intervals (one late or lost reading is not an outage). Display "
            "only: a no-data rule raises the alarm. Empty: online/offline is not shown."
        ),
    )
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "device_types"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=_jsonb_type_is("metrics", "array"), name="device_types_metrics_array"),
            models.CheckConstraint(
                condition=models.Q(expected_interval_seconds__gt=0), name="device_types_expected_interval_positive"
            ),
            # Strict without a declared metric would refuse every reading of the type's devices.
            models.CheckConstraint(
                condition=models.Q(strict_metrics=False) | ~models.Q(metrics=[]),
                name="device_types_strict_metrics_declared",
                violation_error_code="strict_without_metrics",
                violation_error_message=STRICT_WITHOUT_METRICS,
            ),
        ]

    def __str__(self):
        return self.name


class DeviceStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Inactive"
    MAINTENANCE = "maintenance", "Maintenance"
    RETIRED = "retired", "Retired"


# Devices in these states may send telemetry; readings of devices in maintenance are stored but not evaluated.
INGESTING_STATUSES = (DeviceStatus.ACTIVE, DeviceStatus.MAINTENANCE)
# Readings of devices in these states are stored but never evaluated by the rules (the rule trigger's
# `d.status <> 'maintenance'`; tests/rules/test_sql_parity.py keeps the two equal).
UNEVALUATED_STATUSES = (DeviceStatus.MAINTENANCE,)


class IngestKey(models.Model):
    """A device key: the devices pointing at it only accept readings whose request carries it
    (``Authorization: Device <key>``). Several devices may share one, e.g. the devices behind one gateway.

    Only a keyed hash of the key is stored (telemetry.ingest.keys): the key itself is shown once, when the key is
    created or rotated. Deleting a key revokes it: its devices return to open ingest.
    """

    name = models.CharField(max_length=100, unique=True)
    key_hash = models.BinaryField(unique=True, editable=False)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Ingest requests refused because they lacked this key for one of its devices (401s), and the latest one.
    refusals = models.BigIntegerField(db_default=0, default=0, editable=False)
    last_refused_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "ingest_keys"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.lookups.Exact(
                    models.Func(models.F("key_hash"), function="octet_length", output_field=models.IntegerField()),
                    32,
                ),
                name="ingest_keys_key_hash_sha256",
            ),
            models.CheckConstraint(condition=models.Q(refusals__gte=0), name="ingest_keys_refusals_not_negative"),
        ]

    def __str__(self):
        return self.name


class Device(models.Model):
    id = models.UUIDField(
        primary_key=True,
        db_default=models.Func(function="uuid_generate_v4", output_field=models.UUIDField()),
        editable=False,
    )
    name = models.CharField(max_length=200)
    serial_number = models.CharField(max_length=100, unique=True)
    location = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=16, choices=DeviceStatus.choices, default=DeviceStatus.ACTIVE)
    device_type = models.ForeignKey(DeviceType, on_delete=models.PROTECT, related_name="devices")
    metadata = models.JSONField(default=dict, blank=True)
    # None: open ingest, anyone may send its readings (the default).
    ingest_key = models.ForeignKey(IngestKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="devices")
    # Set by the database (trigger devices_status_changed_at) whenever the status changes, whoever changes it;
    # no-data rules count a device's silence from when it last became active at the earliest.
    status_changed_at = models.DateTimeField(db_default=Now(), editable=False)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "devices"
        ordering = ["name", "serial_number"]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=DeviceStatus.values), name="devices_status_valid"),
            models.CheckConstraint(condition=_jsonb_type_is("metadata", "object"), name="devices_metadata_object"),
        ]

    def __str__(self):
        return f"{self.name} ({self.serial_number})"


class IngestRequestCount(models.Model):
    """The ingest requests of one device in its current rate window (INGEST_DEVICE_RATE), written only by the
    ingest statement (telemetry.ingest.services). UNLOGGED, its foreign key ON DELETE CASCADE, declared in SQL:
    sql/history/telemetry/0018_ingest_keys_and_rates.sql."""

    device = models.OneToOneField(
        Device, primary_key=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    window_start = models.DateTimeField()
    requests = models.IntegerField()

    class Meta:
        db_table = "ingest_request_counts"
        constraints = [
            models.CheckConstraint(condition=models.Q(requests__gt=0), name="ingest_request_counts_positive"),
        ]

    def __str__(self):
        return f"{self.device_id}: {self.requests} since {self.window_start.isoformat()}"


class Telemetry(models.Model):
    """One reading: the ``telemetry`` hypertable (1-day chunks on ``time``), see sql/history/telemetry/0001_initial.sql.

    The foreign key to devices is declared in SQL, ON DELETE CASCADE and not deferred, so deleting a device
    deletes its readings in the database without Django loading them. Admin can't register a model with a
    composite primary key: readings are browsed through the API and the device's admin page.
    """

    pk = models.CompositePrimaryKey("device_id", "time")
    # No index of its own: the primary key (device_id, time) leads with it, and each index costs every insert.
    device = models.ForeignKey(
        Device, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    time = models.DateTimeField()
    metrics = models.JSONField()
    received_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "telemetry"
        verbose_name_plural = "telemetry"
        constraints = [
            models.CheckConstraint(condition=_jsonb_type_is("metrics", "object"), name="telemetry_metrics_object"),
        ]
        # Declared here because pgtrigger migrates the triggers of a model's Meta; the SQL belongs to rules
        # (rules/triggers.py, sql/triggers/telemetry_evaluate_rules.plpgsql, the body of both). See sql/README.md.
        triggers = [
            EvaluateRules(name="telemetry_evaluate_rules"),
            EvaluateMergedRules(name="telemetry_evaluate_merged_rules"),
        ]

    def __str__(self):
        return f"{self.device_id} @ {self.time.isoformat()}"
