from rest_framework.routers import SimpleRouter

app_name = "rules-api"

router = SimpleRouter()

urlpatterns = router.urls
