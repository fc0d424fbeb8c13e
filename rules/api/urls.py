from rest_framework.routers import SimpleRouter

from rules.api import views

app_name = "rules-api"

router = SimpleRouter()
router.register("notification-channels", views.NotificationChannelViewSet)
router.register("notifications", views.NotificationViewSet)

urlpatterns = router.urls
