"""A small, complete world for the security tests: one of everything, so every URL can name a real object."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from iothub.models import Role, User
from rules.models import Event, EventStatus, Notification, NotificationChannel, Rule
from telemetry.ingest.keys import ingest_key_create
from telemetry.models import Device, DeviceType, IngestKey
from tests.factories import (
    DeviceFactory,
    DeviceTypeFactory,
    NotificationChannelFactory,
    RuleFactory,
    UserFactory,
    insert_readings,
)

ROLES = ("anonymous", "viewer", "operator", "admin")


@dataclass
class World:
    users: dict[str, User]  # by role; "anonymous" is absent
    device_type: DeviceType
    spare_device_type: DeviceType  # used by nothing: deletable
    device: Device
    spare_device: Device
    channel: NotificationChannel
    rule: Rule
    open_event: Event
    acknowledged_event: Event
    notification: Notification
    ingest_key: IngestKey  # of the spare device: the readings the matrix sends are the other device's


def build_world():
    users = {role: UserFactory(role=role, username=f"{role}-user") for role in (Role.VIEWER, Role.OPERATOR, Role.ADMIN)}
    device_type = DeviceTypeFactory(name="thermometer", metrics=[{"name": "temperature", "unit": "°C"}])
    spare_device_type = DeviceTypeFactory(name="spare")
    device = DeviceFactory(device_type=device_type, name="boiler", serial_number="SN-BOILER")
    spare_device = DeviceFactory(device_type=device_type, name="pump", serial_number="SN-PUMP")
    channel = NotificationChannelFactory(name="ops log")
    rule = RuleFactory(name="too hot", channels=[channel])
    now = datetime.now(UTC).replace(microsecond=0)
    # Breaches of the rule: the trigger opens one event per device, with one notification each.
    insert_readings(device, [(now - timedelta(minutes=minute), {"temperature": 20 + minute}) for minute in range(15)])
    insert_readings(spare_device, [(now - timedelta(minutes=1), {"temperature": 45, "door_open": True})])
    open_event = Event.objects.get(device=device)
    acknowledged_event = Event.objects.get(device=spare_device)
    Event.objects.filter(pk=acknowledged_event.pk).update(
        status=EventStatus.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=users[Role.OPERATOR]
    )
    acknowledged_event.refresh_from_db()
    return World(
        users=users,
        device_type=device_type,
        spare_device_type=spare_device_type,
        device=device,
        spare_device=spare_device,
        channel=channel,
        rule=rule,
        open_event=open_event,
        acknowledged_event=acknowledged_event,
        notification=Notification.objects.filter(event=open_event).first(),
        ingest_key=ingest_key_create(name="gateway", devices=[spare_device])[0],
    )


@pytest.fixture
def world(db):
    return build_world()
