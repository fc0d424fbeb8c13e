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


class LoginCounterKind(models.TextChoices):
    # Guesses at one account from one address: what locks out. Never one account from everywhere, so nobody can
    # lock an admin out from elsewhere.
    ACCOUNT = "account", "Account from an address"
    # Every failed login and refresh from one address, whatever the username: what stops a spray of usernames.
    ADDRESS = "address", "Address"


class LoginCounter(models.Model):
    """Failed authentication attempts of one key within its window, shared by every web worker (see
    iothub/login_protection.py, which alone writes these rows). A key is locked while ``attempts`` has reached its
    limit and ``window_ends_at`` lies ahead; an expired row counts for nothing and is pruned."""

    kind = models.CharField(max_length=16, choices=LoginCounterKind.choices)
    # Empty for an address counter. Cut to the longest username that can exist.
    username = models.CharField(max_length=150, blank=True)
    client_address = models.GenericIPAddressField()
    attempts = models.PositiveIntegerField()
    window_ends_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField()

    class Meta:
        db_table = "login_counters"
        ordering = ["-last_attempt_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "username", "client_address"], name="login_counters_key"),
            models.CheckConstraint(
                condition=models.Q(kind__in=LoginCounterKind.values), name="login_counters_kind_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(kind=LoginCounterKind.ADDRESS, username="")
                | (models.Q(kind=LoginCounterKind.ACCOUNT) & ~models.Q(username="")),
                name="login_counters_username_by_kind",
            ),
        ]
        indexes = [models.Index(fields=["window_ends_at"], name="login_counters_window_ends")]

    def __str__(self):
        who = f"{self.username} from {self.client_address}" if self.username else self.client_address
        return f"{self.get_kind_display()}: {who}"
