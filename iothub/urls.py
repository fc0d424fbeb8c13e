from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("iothub.api.urls")),
    path("api/v1/", include("telemetry.api.urls")),
    path("api/v1/", include("rules.api.urls")),
]

handler400 = "iothub.views.handler400"
handler403 = "iothub.views.handler403"
handler404 = "iothub.views.handler404"
handler500 = "iothub.views.handler500"
