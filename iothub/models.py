from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models

# Raised by the trigger users_keep_an_active_admin (sql/triggers/) when a change would leave no active admin.
LAST_ADMIN_SQLSTATE = "IO002"


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    OPERATOR = "operator", "Operator"
    VIEWER = "viewer", "Viewer"


class RoleUserManager(UserManager):
    """Creates users from a role. Django's ``is_superuser`` argument (createsuperuser passes it) is translated into
    the admin role, ``is_staff`` dropped (every role is staff); neither is stored."""

    def _create_user(self, username, email, password, **extra_fields):
        extra_fields.pop("is_staff", None)
        wants_admin = extra_fields.pop("is_superuser", False)
        extra_fields.setdefault("role", Role.ADMIN if wants_admin else Role.VIEWER)
        return super()._create_user(username, email, password, **extra_fields)

    def create_superuser(self, username, email=None, password=None, **extra_fields):
        extra_fields["role"] = Role.ADMIN
        return self._create_user(username, email, password, **extra_fields)


class User(AbstractUser):
    """A person using the API or Django Admin. ``role`` is the single source of truth for what they may do:
    ``is_staff`` and ``is_superuser`` are properties derived from it (no columns), so they cannot disagree, and
    Django's permissions come from iothub.access (the table the API reads too), not from groups or user rows."""

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    objects = RoleUserManager()

    class Meta:
        db_table = "users"
        ordering = ["username"]
        constraints = [
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="users_role_valid"),
        ]

    @property
    def is_admin(self):
        return self.role == Role.ADMIN

    # Defined in the class body, these replace AbstractUser's fields of the same names.
    @property
    def is_staff(self):
        # Every role uses Admin; what it sees there is has_perm's answer.
        return self.role in Role.values

    @property
    def is_superuser(self):
        return self.is_admin

    # iothub.access imports Role from this module, hence the imports inside the methods.
    def has_perm(self, perm, obj=None):
        from iothub.access import role_has_perm

        return self.is_active and role_has_perm(self.role, perm)

    def has_module_perms(self, app_label):
        from iothub.access import role_has_module_perms

        return self.is_active and role_has_module_perms(self.role, app_label)
