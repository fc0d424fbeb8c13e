from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Case, Q, When
from django.db.models.functions import Now

from iothub.login_protection import limits
from iothub.models import LoginCounter, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
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
class LoginCounterAdmin(admin.ModelAdmin):
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
