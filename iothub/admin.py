from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.db import DatabaseError, transaction
from django.db.models import Case, Q, When
from django.db.models.functions import Now
from django.http import HttpResponseRedirect

from iothub.admin_site import ModelAdmin, SavedValuesOnly
from iothub.login_protection import limits
from iothub.models import LAST_ADMIN_SQLSTATE, LoginCounter, User

# Permissions come from the role (iothub.access), never from groups: a group's permissions would do nothing.
admin.site.unregister(Group)


@admin.register(User)
class UserAdmin(SavedValuesOnly, DjangoUserAdmin):
    """Django's user admin with the role in place of is_staff/is_superuser, which derive from it."""

    list_display = ["username", "email", "role", "is_active", "last_login"]
    list_filter = ["role", "is_active"]
    fieldsets = [
        (None, {"fields": ["username", "password"]}),
        ("Personal info", {"fields": ["first_name", "last_name", "email"]}),
        ("Access", {"fields": ["role", "is_active"]}),
        ("Important dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["username", "email", "role", "password1", "password2"]}),
    ]
    readonly_fields = ["last_login", "date_joined"]

    # The database refuses to lose the last active admin (trigger users_keep_an_active_admin), whatever the path:
    # the change form, the delete page, the changelist's bulk delete. Its message is shown instead of a 500; the
    # atomic block rolls back the rest of the request's writes (the bulk delete has no transaction of its own).
    def changeform_view(self, request, *args, **kwargs):
        return self._keeping_an_admin(super().changeform_view, request, *args, **kwargs)

    def delete_view(self, request, *args, **kwargs):
        return self._keeping_an_admin(super().delete_view, request, *args, **kwargs)

    def changelist_view(self, request, *args, **kwargs):
        return self._keeping_an_admin(super().changelist_view, request, *args, **kwargs)

    def _keeping_an_admin(self, view, request, *args, **kwargs):
        try:
            with transaction.atomic():
                return view(request, *args, **kwargs)
        except DatabaseError as error:
            if getattr(error.__cause__, "pgcode", None) != LAST_ADMIN_SQLSTATE:
                raise
            diag = error.__cause__.diag
            self.message_user(request, f"{diag.message_primary} {diag.message_hint}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


def _locked_condition():
    """A counter is locked while its attempts have reached its kind's limit and its window lies ahead."""
    by_kind = limits()
    reached = Q()
    for kind, limit in by_kind.items():
        reached |= Q(kind=kind, attempts__gte=limit.attempts)
    return reached & Q(window_ends_at__gt=Now())


class LockedFilter(admin.SimpleListFilter):
    title = "locked out"
    parameter_name = "locked"

    def lookups(self, request, model_admin):
        return [("yes", "Locked out now"), ("no", "Not locked")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(_locked_condition())
        if self.value() == "no":
            return queryset.exclude(_locked_condition())
        return queryset


@admin.register(LoginCounter)
class LoginCounterAdmin(ModelAdmin):
    """Failed logins counted by the brute-force protection; clearing a counter ends its lock-out. Written only by
    the logins themselves: no adding or editing here."""

    list_display = ["kind", "username", "client_address", "attempts", "locked", "window_ends_at", "last_attempt_at"]
    list_filter = [LockedFilter, "kind"]
    search_fields = ["username", "client_address"]
    actions = ["clear"]

    def get_queryset(self, request):
        locked = Case(When(_locked_condition(), then=True), default=False)
        return super().get_queryset(request).annotate(is_locked=locked)

    @admin.display(boolean=True, description="locked out", ordering="is_locked")
    def locked(self, counter):
        return counter.is_locked

    @admin.action(description="Clear the selected counters (ends their lock-outs)", permissions=["delete"])
    def clear(self, request, queryset):
        cleared, _ = queryset.delete()
        self.message_user(request, f"Cleared {cleared} login counter(s).", messages.SUCCESS)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
