from django.db import models
from django.db.models.functions import Now

from rules.triggers import EvaluateRules

# A metric's name: a top-level key of a reading, a declared metric, a rule's metric. \A and \Z mean the same in
# Python and in PostgreSQL regular expressions; "$" would let a trailing newline through in Python.
METRIC_NAME_REGEX = r"\A[A-Za-z_][A-Za-z0-9_.-]{0,63}\Z"


def _jsonb_type_is(field, json_type):
    """A CHECK condition: ``jsonb_typeof(field) = json_type``."""
    return models.lookups.Exact(
        models.Func(models.F(field), function="jsonb_typeof", output_field=models.TextField()), json_type
    )


class DeviceType(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    # Documents what devices of this type send ([{"name", "unit", "description"}]); it does not restrict ingest.
    metrics = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "device_types"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=_jsonb_type_is("metrics", "array"), name="device_types_metrics_array"),
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
        # (rules/triggers.py, sql/triggers/telemetry_evaluate_rules.plpgsql). See sql/README.md.
        triggers = [EvaluateRules(name="telemetry_evaluate_rules")]

    def __str__(self):
        return f"{self.device_id} @ {self.time.isoformat()}"
