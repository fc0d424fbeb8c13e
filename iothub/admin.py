from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.db import DatabaseError, transaction
from django.http import HttpResponseRedirect

from iothub.models import LAST_ADMIN_SQLSTATE, User

admin.site.site_header = "IoT Hub administration"
admin.site.site_title = "IoT Hub"
# Permissions come from the role (iothub.access), never from groups: a group's permissions would do nothing.
admin.site.unregister(Group)


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
