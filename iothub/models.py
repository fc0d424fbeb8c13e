from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    OPERATOR = "operator", "Operator"
    VIEWER = "viewer", "Viewer"


class RoleUserManager(UserManager):
    """Creates users from a role. Django's ``is_staff``/``is_superuser`` arguments (createsuperuser passes them)
    are translated into the admin role, never stored."""

    def _create_user(self, username, email, password, **extra_fields):
        wants_admin = extra_fields.pop("is_staff", False) | extra_fields.pop("is_superuser", False)
        extra_fields.setdefault("role", Role.ADMIN if wants_admin else Role.VIEWER)
        return super()._create_user(username, email, password, **extra_fields)

    def create_superuser(self, username, email=None, password=None, **extra_fields):
        extra_fields["role"] = Role.ADMIN
        return self._create_user(username, email, password, **extra_fields)


class User(AbstractUser):
    """A person using the API or Django Admin. ``role`` is the single source of truth for what they may do:
    ``is_staff`` and ``is_superuser`` are properties derived from it (no columns), so they cannot disagree."""

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
        return self.is_admin

    @property
    def is_superuser(self):
        return self.is_admin
