"""Role-based permissions shared by every app.

Viewers read; operators also manage devices and act on events; admins do everything: per model, the roles come
from iothub.access.MODEL_ACCESS, which Django Admin reads too. The role is read from the user row loaded for each
request, so a role change applies at once (the JWT ``role`` claim is informational).
"""

from functools import cache

from rest_framework.permissions import SAFE_METHODS, BasePermission

from iothub.access import MODEL_ACCESS
from iothub.models import Role


class RolePermission(BasePermission):
    read_roles = frozenset(Role.values)
    write_roles = frozenset()

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        roles = self.read_roles if request.method in SAFE_METHODS else self.write_roles
        return user.role in roles


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
