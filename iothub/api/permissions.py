"""Role-based permissions shared by every app.

Viewers read; operators also manage devices and act on events; admins do everything: per model, the roles come
from iothub.access.MODEL_ACCESS, which Django Admin reads too. The role is read from the user row loaded for each
request, so a role change applies at once (the JWT ``role`` claim is informational).
"""

from functools import cache

from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission

from iothub.access import MODEL_ACCESS
from iothub.models import Role


class RoleRequired(PermissionDenied):
    """A 403 that names the roles that may do what the caller's role may not (the problem's ``required_roles``)."""

    def __init__(self, *, roles, role):
        self.required_roles = [name for name in Role.values if name in roles]  # in the order of Role
        needed = " or ".join(self.required_roles) or "no role"
        action = "Only" if len(self.required_roles) == 1 else "Only the roles"
        super().__init__(f"{action} {needed} may do this; you are {role}.", code="permission_denied")

    def problem_extensions(self):
        return {"required_roles": self.required_roles}


class RolePermission(BasePermission):
    read_roles = frozenset(Role.values)
    write_roles = frozenset()

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False  # DRF answers 401 (not authenticated)
        roles = self.read_roles if request.method in SAFE_METHODS else self.write_roles
        if user.role not in roles:
            raise RoleRequired(roles=roles, role=user.role)
        return True


class AdminOnly(RolePermission):
    read_roles = write_roles = frozenset({Role.ADMIN})


class AnyRole(RolePermission):
    write_roles = frozenset(Role.values)


@cache
def model_permission(model_label):
    """The permission class of the API views of a model (``"telemetry.device"``): its roles in MODEL_ACCESS."""
    access = MODEL_ACCESS[model_label]
    name = "".join(part.title() for part in model_label.split(".")) + "Permission"
    return type(name, (RolePermission,), {"read_roles": access.read, "write_roles": access.write})
