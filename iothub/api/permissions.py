"""Role-based permissions shared by every app.

Viewers read; operators also manage devices and act on events; admins do everything. The role is read from the
user row loaded for each request, so a role change applies at once (the JWT ``role`` claim is informational).
"""

from rest_framework.permissions import SAFE_METHODS, BasePermission

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


class ReadAnyWriteAdmin(RolePermission):
    write_roles = frozenset({Role.ADMIN})


class ReadAnyWriteOperator(RolePermission):
    write_roles = frozenset({Role.ADMIN, Role.OPERATOR})


class AnyRole(RolePermission):
    write_roles = frozenset(Role.values)
