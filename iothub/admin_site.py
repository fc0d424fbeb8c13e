"""The project's admin site: Django's, with a login form behind the brute-force protection
(iothub/login_protection.py) that answers a refused attempt with a 429 and says why; and the base of every
ModelAdmin of the project, ``SavedValuesOnly``."""

import math

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import NOT_PROVIDED

from iothub.login_protection import LoginThrottled


class AdminLoginForm(AdminAuthenticationForm):
    def clean(self):
        self.retry_after = None
        try:
            return super().clean()
        except LoginThrottled as refused:
            self.retry_after = refused.wait
            minutes = math.ceil(refused.wait / 60)
            raise ValidationError(
                "%(reason)s Try again in %(minutes)d minute(s).",
                code="throttled",
                params={"reason": refused.reason, "minutes": minutes},
            ) from None


class AdminSite(admin.AdminSite):
    site_header = "IoT Hub administration"
    site_title = "IoT Hub"
    login_form = AdminLoginForm
    # The sidebar's 300 px would squeeze the lists (events: message, count and times) below a 1400 px screen; the
    # index page and the breadcrumbs lead everywhere it does.
    enable_nav_sidebar = False

    def login(self, request, extra_context=None):
        response = super().login(request, extra_context)
        form = getattr(response, "context_data", {}).get("form")
        if form is not None and getattr(form, "retry_after", None):
            response.status_code = 429
            response["Retry-After"] = str(form.retry_after)
        return response


def _set_when_saved(model, name):
    """Whether the field ``name`` of ``model`` gets its value when the row is saved (a database default, auto_now):
    on an unsaved object it holds no value yet (a db_default holds the Python object of its expression)."""
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:  # a method or an admin attribute
        return False
    return (
        field.db_default is not NOT_PROVIDED
        or getattr(field, "auto_now", False)
        or getattr(field, "auto_now_add", False)
    )


class SavedValuesOnly:
    """Leaves the read-only fields that get their value when the row is saved (created_at, updated_at,
    status_changed_at…) off add pages, where they would show ``<DatabaseDefault object at 0x…>`` or a dash, and
    a fieldset left empty by that with them. Every ModelAdmin of the project starts from it."""

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None:
            return fieldsets
        readonly = set(self.get_readonly_fields(request, obj))
        unsaved = {name for name in readonly if isinstance(name, str) and _set_when_saved(self.model, name)}
        kept = []
        for name, options in fieldsets:
            fields = [field for field in options["fields"] if field not in unsaved]
            if fields:
                kept.append((name, {**options, "fields": fields}))
        return kept


class ModelAdmin(SavedValuesOnly, admin.ModelAdmin):
    """The project's ModelAdmin: Django's, with ``SavedValuesOnly``."""
