from django.urls import path
from rest_framework.routers import SimpleRouter

from iothub.api import views

app_name = "iothub-api"

router = SimpleRouter()
router.register("users", views.UserViewSet)

urlpatterns = [
    path("auth/token/", views.TokenObtainPairApi.as_view(), name="token-obtain"),
    path("auth/token/refresh/", views.TokenRefreshApi.as_view(), name="token-refresh"),
    path("auth/logout/", views.LogoutApi.as_view(), name="logout"),
    path("me/", views.MeApi.as_view(), name="me"),
    path("health/", views.HealthApi.as_view(), name="health"),
    path("schema/", views.SchemaApi.as_view(), name="schema"),
    path("docs/", views.DocsView.as_view(url_name="iothub-api:schema"), name="docs"),
    *router.urls,
]
