from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from drf_spectacular.utils import OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import serializers, status, viewsets
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt import views as jwt_views
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from iothub import edition, replica
from iothub.api.permissions import AnyRole, model_permission
from iothub.api.problems import PROBLEM_CONTENT_TYPE, problem_body
from iothub.api.query_parameters import KnownQueryParametersMixin
from iothub.api.serializers import LogoutSerializer, MeSerializer, TokenRefreshSerializer, UserSerializer
from iothub.models import Role, User


class TokenObtainPairApi(KnownQueryParametersMixin, jwt_views.TokenObtainPairView):
    """Log in: a JWT pair for a username and password.

    The access token lives 15 minutes, the refresh token 1 day.

    Failed logins are limited per username and client address (429 with `Retry-After`)."""

    # Failed logins are counted and refused with 429s by iothub.login_protection, the authentication backend.
    login_protected = True


class TokenRefreshApi(KnownQueryParametersMixin, jwt_views.TokenRefreshView):
    """Refresh: a new token pair for a refresh token, which is blacklisted (rotation)."""

    serializer_class = TokenRefreshSerializer
    # Failed refreshes count against the client address (iothub.login_protection, from the serializer).
    login_protected = True


class LogoutApi(KnownQueryParametersMixin, APIView):
    """Blacklists a refresh token. An access token already issued stays valid until it expires (15 minutes)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request):
        # Without it DRF turns the invalid-token 401 into a 403.
        return 'Bearer realm="api"'

    @extend_schema(summary="Log out: blacklist a refresh token", request=LogoutSerializer, responses={204: None})
    def post(self, request):
        serializer = LogoutSerializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(KnownQueryParametersMixin, APIView):
    permission_classes = [AnyRole]

    @extend_schema(summary="The caller and its role", responses=MeSerializer)
    def get(self, request):
        return Response(MeSerializer(request.user).data)


class UserViewSet(KnownQueryParametersMixin, viewsets.ModelViewSet):
    queryset = User.objects.all()
    serializer_class = UserSerializer
    permission_classes = [model_permission("iothub.user")]
    filterset_fields = ["role", "is_active"]
    search_fields = ["username", "email", "first_name", "last_name"]
    ordering_fields = ["username", "date_joined", "last_login", "role"]

    # Each write in a transaction of its own: when the database refuses it (the last active admin, a 409), the
    # password set in the same request is rolled back with it and the connection stays usable.
    def perform_update(self, serializer):
        with transaction.atomic():
            serializer.save()

    def perform_destroy(self, instance):
        with transaction.atomic():
            instance.delete()


_applied_migrations_seen = False


def _migrations_applied():
    """True when no migration is pending. Cached once true: pending migrations only appear with a new release,
    and a new release restarts the process."""
    global _applied_migrations_seen
    if not _applied_migrations_seen:
        executor = MigrationExecutor(connection)
        _applied_migrations_seen = not executor.migration_plan(executor.loader.graph.leaf_nodes())
    return _applied_migrations_seen


def health_report():
    """``(healthy, report)``: database reachable, TimescaleDB version and edition, migrations applied.

    The edition is the one the database was migrated under; a library serving another one is not healthy."""
    report = {"database": "unavailable", "timescaledb": None, "migrations_applied": False}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
            (version,) = cursor.fetchone() or (None,)
        report["database"] = "ok"
        if version:
            try:
                report["timescaledb"] = {"version": version, "edition": edition.check() or edition.served()}
            except edition.EditionMismatch:
                report["timescaledb"] = None
        report["migrations_applied"] = _migrations_applied()
    except DatabaseError:
        connection.close_if_unusable_or_obsolete()
    healthy = report["database"] == "ok" and report["timescaledb"] is not None and report["migrations_applied"]
    return healthy, report


class TimescaleSerializer(serializers.Serializer):
    version = serializers.CharField()
    edition = serializers.ChoiceField(["apache", "timescale"])


class ReplicaSerializer(serializers.Serializer):
    database = serializers.ChoiceField(
        ["ok", "unavailable"], help_text="Unavailable: telemetry reads fall back to the primary."
    )
    lag_bytes = serializers.IntegerField(allow_null=True, help_text="WAL written by the primary, not yet replayed.")
    lag_seconds = serializers.FloatField(
        allow_null=True, help_text="0 when nothing is left to replay, else the age of the newest replayed transaction."
    )
    replay_paused = serializers.BooleanField(allow_null=True)


class HealthSerializer(serializers.Serializer):
    database = serializers.ChoiceField(["ok", "unavailable"])
    timescaledb = TimescaleSerializer(
        allow_null=True, required=False, help_text="For admins only (a bearer token): versions help attackers."
    )
    replica = ReplicaSerializer(
        allow_null=True,
        required=False,
        help_text="For admins only: the read replica (DATABASE_REPLICA_URL), null without one. Its state does not "
        "change the status: without it, telemetry reads go to the primary.",
    )
    migrations_applied = serializers.BooleanField()


class HealthProblemSerializer(HealthSerializer):
    """The problem document of a failed health check, with the report's fields as extension members."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.ListField(child=serializers.DictField())


def _caller_is_admin(request):
    """Whether the request carries an admin's valid access token. Health needs no credentials, so a missing or bad
    token is no error here: the caller just gets the status without versions."""
    try:
        authenticated = JWTAuthentication().authenticate(request)
    except (AuthenticationFailed, InvalidToken, TokenError):
        return False
    return authenticated is not None and authenticated[0].role == Role.ADMIN


class HealthApi(KnownQueryParametersMixin, APIView):
    """Liveness and readiness for load balancers and container healthchecks: no authentication. The TimescaleDB
    version and edition, and the read replica's lag, are shown to admins only."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Health: database, TimescaleDB, migrations",
        responses={
            200: HealthSerializer,
            (503, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                HealthProblemSerializer, description="A check failed: a problem that carries the same report."
            ),
        },
    )
    def get(self, request):
        healthy, report = health_report()
        if _caller_is_admin(request):
            report["replica"] = replica.replica_report()
        else:
            del report["timescaledb"]
        if healthy:
            return Response(report)
        # A problem document that keeps the report's fields as extension members.
        body = problem_body(503, code="unhealthy", detail="A health check failed.", **report)
        return Response(body, status=503, content_type=PROBLEM_CONTENT_TYPE)


class SchemaApi(KnownQueryParametersMixin, SpectacularAPIView):
    """The OpenAPI 3 schema, YAML or JSON (``?format=json``)."""

    extra_query_parameters = ["lang"]  # drf-spectacular's: the language of the descriptions


class DocsView(KnownQueryParametersMixin, SpectacularSwaggerView):
    """Swagger UI, served from our own static files."""
