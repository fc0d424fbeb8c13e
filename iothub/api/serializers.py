from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt import serializers as jwt_serializers

from iothub.client_address import client_address
from iothub.login_protection import refresh_attempt_begin
from iothub.models import User


class StrictFieldsMixin:
    """Refuses fields the serializer does not know, so a typo in a write is an error instead of a silent no-op."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: [serializers.ErrorDetail("Unknown field.", code="unknown_field")] for name in unknown}
                )
        return super().to_internal_value(data)


class StrictModelSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    pass


class UserSerializer(StrictModelSerializer):
    password = serializers.CharField(write_only=True, required=False, style={"input_type": "password"})

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "role",
            "is_active",
            "date_joined",
            "last_login",
            "password",
        ]
        read_only_fields = ["date_joined", "last_login"]

    def get_fields(self):
        fields = super().get_fields()
        fields["password"].required = self.instance is None
        return fields

    def validate(self, attrs):
        password = attrs.get("password")
        if password:
            candidate = self.instance or User()
            for name, value in attrs.items():
                if name != "password":
                    setattr(candidate, name, value)
            try:
                password_validation.validate_password(password, user=candidate)
            except DjangoValidationError as exc:
                raise serializers.ValidationError({"password": list(exc.messages)}) from exc
        return attrs

    def create(self, validated_data):
        password = validated_data.pop("password")
        return User.objects.create_user(password=password, **validated_data)

    def update(self, instance, validated_data):
        password = validated_data.pop("password", None)
        if password:
            instance.set_password(password)
        return super().update(instance, validated_data)


class MeSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email", "first_name", "last_name", "role", "date_joined", "last_login"]
        read_only_fields = fields


class TokenObtainPairSerializer(StrictFieldsMixin, jwt_serializers.TokenObtainPairSerializer):
    """The token pair, with the user's role as an informational claim (authorization reads the database)."""

    @classmethod
    def get_token(cls, user):
        token = super().get_token(user)
        token["role"] = user.role
        return token


class TokenRefreshSerializer(StrictFieldsMixin, jwt_serializers.TokenRefreshSerializer):
    def validate(self, attrs):
        # Counted against the client address before the token is verified; a refused attempt is a 429.
        attempt = refresh_attempt_begin(address=client_address(self.context["request"]))
        try:
            data = super().validate(attrs)
        except User.DoesNotExist:
            # SimpleJWT 5.5 looks the token's user up with .get(): a deleted user's token would be a 500.
            raise AuthenticationFailed(self.error_messages["no_active_account"], "no_active_account") from None
        attempt.succeeded()
        return data


class LogoutSerializer(StrictFieldsMixin, jwt_serializers.TokenBlacklistSerializer):
    pass
