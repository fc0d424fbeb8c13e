from django.urls import path
from rest_framework.routers import SimpleRouter

from telemetry.api import views
from telemetry.ingest.views import TelemetryIngestApi

app_name = "telemetry-api"

router = SimpleRouter()
router.register("device-types", views.DeviceTypeViewSet)
router.register("devices", views.DeviceViewSet, basename="device")
router.register("ingest-keys", views.IngestKeyViewSet)

urlpatterns = [
    path("telemetry/ingest/", TelemetryIngestApi.as_view(), name="telemetry-ingest"),
    path("devices/<uuid:device_id>/telemetry/", views.DeviceTelemetryApi.as_view(), name="device-telemetry"),
    path(
        "devices/<uuid:device_id>/telemetry/latest/",
        views.DeviceTelemetryLatestApi.as_view(),
        name="device-telemetry-latest",
    ),
    path(
        "devices/<uuid:device_id>/telemetry/aggregate/",
        views.DeviceTelemetryAggregateApi.as_view(),
        name="device-telemetry-aggregate",
    ),
    path("ingest-keys/<int:pk>/rotate/", views.IngestKeyRotateApi.as_view(), name="ingestkey-rotate"),
    *router.urls,
]
