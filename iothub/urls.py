from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    # The address make run prints and Admin's "View site" lead somewhere: the API's documentation.
    path("", RedirectView.as_view(url="/api/v1/docs/", permanent=False), name="home"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("iothub.api.urls")),
    path("api/v1/", include("telemetry.api.urls")),
    path("api/v1/", include("rules.api.urls")),
]

handler400 = "iothub.views.handler400"
handler403 = "iothub.views.handler403"
handler404 = "iothub.views.handler404"
handler500 = "iothub.views.handler500"
