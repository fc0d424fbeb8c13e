import jwt
import pytest
from django.conf import settings

from tests.conftest import assert_problem
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
REFRESH_URL = "/api/v1/auth/token/refresh/"
LOGOUT_URL = "/api/v1/auth/logout/"
ME_URL = "/api/v1/me/"


def _claims(token):
    return jwt.decode(token, settings.SIMPLE_JWT["SIGNING_KEY"], algorithms=["HS256"])


def _obtain(api_client, username, password=PASSWORD):
    return api_client.post(TOKEN_URL, {"username": username, "password": password})


@pytest.mark.parametrize("role", ["admin", "operator", "viewer"])
def test_token_pair_carries_the_role_and_the_configured_lifetimes(api_client, role):
    UserFactory(username="alice", role=role)
    response = _obtain(api_client, "alice")
    assert response.status_code == 200
    access, refresh = _claims(response.json()["access"]), _claims(response.json()["refresh"])
    assert access["role"] == role
    # Whole seconds from two clock readings: SimpleJWT counts the access token's exp from the refresh token's clock.
    assert access["exp"] - access["iat"] in (15 * 60 - 1, 15 * 60)
    assert refresh["exp"] - refresh["iat"] == 24 * 60 * 60

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    me = api_client.get(ME_URL)
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    assert me.json()["role"] == role
    assert "password" not in me.json()


def test_wrong_password_is_a_401_problem(api_client):
    UserFactory(username="alice")
    assert_problem(_obtain(api_client, "alice", "wrong"), 401, "no_active_account")


def test_inactive_user_gets_no_token(api_client):
    UserFactory(username="alice", is_active=False)
    assert_problem(_obtain(api_client, "alice"), 401)


def test_token_request_with_an_unknown_field_is_refused(api_client):
    UserFactory(username="alice")
    response = api_client.post(TOKEN_URL, {"username": "alice", "password": PASSWORD, "pasword": "x"})
    body = assert_problem(response, 400, "invalid")
    assert body["errors"] == [{"pointer": "/pasword", "detail": "Unknown field.", "code": "unknown_field"}]


def test_refresh_rotates_and_the_old_refresh_token_is_refused(api_client):
    UserFactory(username="alice", role="operator")
    first = _obtain(api_client, "alice").json()
    rotated = api_client.post(REFRESH_URL, {"refresh": first["refresh"]})
    assert rotated.status_code == 200
    assert rotated.json()["refresh"] != first["refresh"]
    assert _claims(rotated.json()["access"])["role"] == "operator"

    assert_problem(api_client.post(REFRESH_URL, {"refresh": first["refresh"]}), 401, "token_not_valid")
    assert api_client.post(REFRESH_URL, {"refresh": rotated.json()["refresh"]}).status_code == 200


def test_logout_blacklists_the_refresh_token(api_client):
    UserFactory(username="alice")
    tokens = _obtain(api_client, "alice").json()
    response = api_client.post(LOGOUT_URL, {"refresh": tokens["refresh"]})
    assert response.status_code == 204
    assert_problem(api_client.post(REFRESH_URL, {"refresh": tokens["refresh"]}), 401, "token_not_valid")
    # Documented: the access token already issued lives until it expires.
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert api_client.get(ME_URL).status_code == 200


def test_logout_with_a_garbage_token_is_a_401_problem(api_client):
    assert_problem(api_client.post(LOGOUT_URL, {"refresh": "not-a-token"}), 401, "token_not_valid")


def test_tampered_or_foreign_tokens_are_refused(api_client):
    user = UserFactory(username="alice")
    forged = jwt.encode({"token_type": "access", "user_id": str(user.pk), "exp": 4_102_444_800}, "a-different-key-" * 4)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    body = assert_problem(api_client.get(ME_URL), 401, "token_not_valid")
    assert body["detail"]


def test_missing_credentials_is_a_401_problem_with_a_challenge(api_client):
    response = api_client.get(ME_URL)
    assert_problem(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_token_endpoint_is_throttled_with_a_429_problem(api_client):
    """The brute-force protection's defaults; its behaviour in detail: test_login_protection.py."""
    UserFactory(username="alice")
    allowed = settings.LOGIN_FAILURE_LIMIT
    statuses = [_obtain(api_client, "alice", "wrong").status_code for _ in range(allowed)]
    assert set(statuses) == {401}
    response = _obtain(api_client, "alice")
    assert_problem(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
