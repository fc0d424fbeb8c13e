"""What each role may do with each model: the one table the API's permission classes
(iothub.api.permissions.model_permission) and Django Admin (User.has_perm) both read, so Admin never lets a role do
what the API refuses it, nor the reverse.

Permissions are Django's: ``"<app_label>.<action>_<model>"`` with the actions view, add, change and delete.
"""

from typing import NamedTuple

from iothub.models import Role

EVERYONE = frozenset(Role.values)
OPERATORS = frozenset({Role.ADMIN, Role.OPERATOR})
ADMINS = frozenset({Role.ADMIN})
WRITE_ACTIONS = frozenset({"add", "change", "delete"})


class ModelAccess(NamedTuple):
    read: frozenset  # roles that may view
    write: frozenset  # roles that may take the write actions (in the API: every method but GET, HEAD, OPTIONS)
    write_actions: frozenset = WRITE_ACTIONS  # the writes the model has at all, for every role, admins included


MODEL_ACCESS = {
    "iothub.user": ModelAccess(read=ADMINS, write=ADMINS),
    # The brute-force protection's counters: written by logins only; clearing one (its lock-out) is a delete.
    "iothub.logincounter": ModelAccess(read=ADMINS, write=ADMINS, write_actions=frozenset({"delete"})),
    "telemetry.devicetype": ModelAccess(read=EVERYONE, write=ADMINS),
    "telemetry.device": ModelAccess(read=EVERYONE, write=OPERATORS),
    # Device keys: whoever manages devices manages their keys (a key can stop a device's ingest, as its status
    # can). Viewers don't see them; nobody sees a key itself after its creation or rotation.
    "telemetry.ingestkey": ModelAccess(read=OPERATORS, write=OPERATORS),
    "rules.rule": ModelAccess(read=EVERYONE, write=ADMINS),
    "rules.rulechannel": ModelAccess(read=EVERYONE, write=ADMINS),  # a rule's channels: part of the rule
    # Raised by the rule trigger, never added or deleted by hand: "change" is acknowledge and resolve.
    "rules.event": ModelAccess(read=EVERYONE, write=OPERATORS, write_actions=frozenset({"change"})),
    "rules.notificationchannel": ModelAccess(read=EVERYONE, write=ADMINS),
    # Written by the trigger and the worker: "change" is "retry now".
    "rules.notification": ModelAccess(read=EVERYONE, write=ADMINS, write_actions=frozenset({"change"})),
}


def role_has_perm(role, perm):
    """Whether ``role`` has the Django permission ``perm``. Models outside the table (groups, the token blacklist)
    are for admins only."""
    app_label, _, codename = perm.partition(".")
    action, _, model_name = codename.partition("_")
    access = MODEL_ACCESS.get(f"{app_label}.{model_name}")
    if access is None:
        return role == Role.ADMIN
    if action == "view":
        return role in access.read
    return action in access.write_actions and role in access.write


def role_has_module_perms(role, app_label):
    """Whether ``role`` sees the app in Admin: it may at least view one of its models."""
    if role == Role.ADMIN:
        return True
    return any(label.startswith(f"{app_label}.") and role in access.read for label, access in MODEL_ACCESS.items())


def may_read_secrets(user):
    """Whether ``user`` sees notification channels' targets whole (webhook URLs carry tokens): admins only."""
    return getattr(user, "role", None) == Role.ADMIN and user.is_active
