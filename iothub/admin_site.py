"""The project's admin site: Django's, with a login form behind the brute-force protection
(iothub/login_protection.py) that answers a refused attempt with a 429 and says why."""

import math

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

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
