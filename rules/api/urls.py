from django.urls import path
from rest_framework.routers import SimpleRouter

from rules.api import views

app_name = "rules-api"

router = SimpleRouter()
router.register("rules", views.RuleViewSet)
router.register("events", views.EventViewSet)
router.register("notification-channels", views.NotificationChannelViewSet)
router.register("notifications", views.NotificationViewSet)

urlpatterns = [
    path("events/<int:pk>/acknowledge/", views.EventAcknowledgeApi.as_view(), name="event-acknowledge"),
    path("events/<int:pk>/resolve/", views.EventResolveApi.as_view(), name="event-resolve"),
    *router.urls,
]
