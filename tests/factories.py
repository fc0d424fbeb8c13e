import factory

from iothub.models import Role, User

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    role = Role.VIEWER
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save(update_fields=["password"])


class DeviceTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "telemetry.DeviceType"
        django_get_or_create = ["name"]

    name = factory.Sequence(lambda n: f"sensor-type-{n}")


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "telemetry.Device"

    name = factory.Sequence(lambda n: f"device {n}")
    serial_number = factory.Sequence(lambda n: f"SN-{n:06d}")
    device_type = factory.SubFactory(DeviceTypeFactory)


class NotificationChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "rules.NotificationChannel"

    name = factory.Sequence(lambda n: f"channel {n}")
    kind = "log"


class RuleFactory(factory.django.DjangoModelFactory):
    """A global rule ``temperature > 30`` unless told otherwise."""

    class Meta:
        model = "rules.Rule"
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"rule {n}")
    metric = "temperature"
    operator = "gt"
    threshold = 30

    @factory.post_generation
    def channels(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.channels.set(extracted)


def insert_readings(device, readings):
    """Stores ``[(time, metrics)]`` as readings of ``device`` in one statement."""
    from telemetry.models import Telemetry

    Telemetry.objects.bulk_create(Telemetry(device=device, time=time, metrics=metrics) for time, metrics in readings)
