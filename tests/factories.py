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
