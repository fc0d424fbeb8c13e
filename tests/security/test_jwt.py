"""Attacks on the JWTs: every forged, stale or misused token is refused with a 401 problem.

Access tokens are tried on ``me/`` (any role may call it, so only the token decides), refresh tokens on
``auth/token/refresh/`` and ``auth/logout/``. A few cases also live in tests/iothub/test_auth.py; this is the
complete set.
"""

import base64
import json
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from iothub.models import Role, User
from tests.conftest import HTTPS, assert_problem
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

ME_URL = "/api/v1/me/"
TOKEN_URL = "/api/v1/auth/token/"
REFRESH_URL = "/api/v1/auth/token/refresh/"
LOGOUT_URL = "/api/v1/auth/logout/"
KEY = settings.SIMPLE_JWT["SIGNING_KEY"]


@pytest.fixture
def alice(db):
    return UserFactory(username="alice", role=Role.OPERATOR)


def _claims(token):
    return jwt.decode(str(token), KEY, algorithms=["HS256"])


def _b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _with_payload(token, **changes):
    """The token with its payload changed and its original signature kept."""
    header, _, signature = str(token).split(".")
    return f"{header}.{_b64({**_claims(token), **changes})}.{signature}"


def _flip_signature(token):
    header, payload, signature = str(token).split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return f"{header}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"


def _expired(user):
    token = AccessToken.for_user(user)
    token.set_exp(from_time=timezone.now() - timedelta(hours=1))  # expired 45 minutes ago
    return str(token)


def _alg_none(user):
    return jwt.encode(_claims(AccessToken.for_user(user)), key=None, algorithm="none")


def _other_algorithm(user):
    # Signed with the right key but an algorithm the server does not accept.
    return jwt.encode(_claims(AccessToken.for_user(user)), KEY, algorithm="HS384")


def _foreign_key(user):
    return jwt.encode(_claims(AccessToken.for_user(user)), "a-different-key-" * 4, algorithm="HS256")


def _not_yet_valid(user):
    claims = {**_claims(AccessToken.for_user(user)), "nbf": int((timezone.now() + timedelta(hours=1)).timestamp())}
    return jwt.encode(claims, KEY, algorithm="HS256")


def _without_user(user):
    claims = _claims(AccessToken.for_user(user))
    del claims["user_id"]
    return jwt.encode(claims, KEY, algorithm="HS256")


def _unknown_user(user):
    return jwt.encode({**_claims(AccessToken.for_user(user)), "user_id": "999999"}, KEY, algorithm="HS256")


def _deleted_user(user):
    token = str(AccessToken.for_user(user))
    User.objects.filter(pk=user.pk).delete()
    return token


def _deactivated_user(user):
    token = str(AccessToken.for_user(user))
    User.objects.filter(pk=user.pk).update(is_active=False)
    return token


ACCESS_ATTACKS = {
    "expired": _expired,
    "tampered signature": lambda user: _flip_signature(AccessToken.for_user(user)),
    "tampered payload": lambda user: _with_payload(AccessToken.for_user(user), user_id="1", role="admin"),
    "alg none": _alg_none,
    "alg HS384": _other_algorithm,
    "signed with another key": _foreign_key,
    "not valid before an hour from now": _not_yet_valid,
    "refresh used as access": lambda user: str(RefreshToken.for_user(user)),
    "no user_id claim": _without_user,
    "unknown user": _unknown_user,
    "deleted user": _deleted_user,
    "deactivated user": _deactivated_user,
    "not a JWT": lambda user: "not-a-token",
    "empty segments": lambda user: "..",
}


@pytest.mark.parametrize("attack", ACCESS_ATTACKS)
def test_a_bad_access_token_is_a_401_problem(alice, attack):
    token = ACCESS_ATTACKS[attack](alice)
    client = APIClient(**HTTPS)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = client.get(ME_URL)
    body = assert_problem(response, 401)
    assert body["code"] in {"token_not_valid", "user_not_found", "user_inactive", "authentication_failed"}, body
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer one two", "Basic YWxpY2U6cGFzc3dvcmQ=", "bearer lowercase-scheme", "Token abc"],
)
def test_a_malformed_authorization_header_is_a_401_problem(alice, authorization):
    client = APIClient(**HTTPS)
    client.credentials(HTTP_AUTHORIZATION=authorization)
    assert_problem(client.get(ME_URL), 401)


def test_a_good_access_token_is_accepted(alice):
    """The control case: the same request with an untouched token succeeds."""
    client = APIClient(**HTTPS)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(alice)}")
    assert client.get(ME_URL).json()["username"] == "alice"


def _rotated(client, user):
    """A refresh token already exchanged for a new pair (rotation blacklists it)."""
    refresh = str(RefreshToken.for_user(user))
    assert client.post(REFRESH_URL, {"refresh": refresh}).status_code == 200
    return refresh


def _logged_out(client, user):
    refresh = str(RefreshToken.for_user(user))
    assert client.post(LOGOUT_URL, {"refresh": refresh}).status_code == 204
    return refresh


def _expired_refresh(client, user):
    token = RefreshToken.for_user(user)
    token.set_exp(from_time=timezone.now() - timedelta(days=2))
    return str(token)


REFRESH_ATTACKS = {
    "expired": _expired_refresh,
    "tampered signature": lambda client, user: _flip_signature(RefreshToken.for_user(user)),
    "alg none": lambda client, user: jwt.encode(_claims(RefreshToken.for_user(user)), key=None, algorithm="none"),
    "access used as refresh": lambda client, user: str(AccessToken.for_user(user)),
    "reused after rotation": _rotated,
    "after logout": _logged_out,
    "deleted user": lambda client, user: _deleted_user_refresh(user),
    "deactivated user": lambda client, user: _deactivated_user_refresh(user),
    "not a JWT": lambda client, user: "not-a-token",
}


def _deleted_user_refresh(user):
    token = str(RefreshToken.for_user(user))
    User.objects.filter(pk=user.pk).delete()
    return token


def _deactivated_user_refresh(user):
    token = str(RefreshToken.for_user(user))
    User.objects.filter(pk=user.pk).update(is_active=False)
    return token


@pytest.mark.parametrize("attack", REFRESH_ATTACKS)
def test_a_bad_refresh_token_gets_no_new_pair(alice, attack):
    client = APIClient(**HTTPS)
    token = REFRESH_ATTACKS[attack](client, alice)
    response = client.post(REFRESH_URL, {"refresh": token})
    assert_problem(response, 401)
    assert "access" not in response.json()


@pytest.mark.parametrize(
    "attack", ["expired", "tampered signature", "alg none", "access used as refresh", "after logout", "not a JWT"]
)
def test_a_bad_refresh_token_cannot_log_out(alice, attack):
    client = APIClient(**HTTPS)
    token = REFRESH_ATTACKS[attack](client, alice)
    assert_problem(client.post(LOGOUT_URL, {"refresh": token}), 401, "token_not_valid")


def test_the_pair_issued_by_a_reused_refresh_token_keeps_working_for_its_holder(alice):
    """Rotation refuses the old token without locking out the holder of the new one."""
    client = APIClient(**HTTPS)
    first = client.post(TOKEN_URL, {"username": "alice", "password": PASSWORD}).json()
    second = client.post(REFRESH_URL, {"refresh": first["refresh"]}).json()
    assert_problem(client.post(REFRESH_URL, {"refresh": first["refresh"]}), 401, "token_not_valid")
    assert client.post(REFRESH_URL, {"refresh": second["refresh"]}).status_code == 200


def test_the_role_claim_is_not_trusted(alice):
    """A token minted while its user was an admin grants only the user's current role."""
    UserFactory(username="root", role=Role.ADMIN)  # the last active admin could not be demoted
    alice.role = Role.ADMIN
    alice.save()
    token = AccessToken.for_user(alice)
    token["role"] = Role.ADMIN
    User.objects.filter(pk=alice.pk).update(role=Role.VIEWER)
    client = APIClient(**HTTPS)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert_problem(client.get("/api/v1/users/"), 403, "permission_denied")
    assert client.get(ME_URL).json()["role"] == Role.VIEWER
