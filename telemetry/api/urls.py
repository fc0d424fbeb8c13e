from rest_framework.routers import SimpleRouter

app_name = "telemetry-api"

router = SimpleRouter()

urlpatterns = router.urls
