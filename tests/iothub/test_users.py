import pytest
from django.db import IntegrityError, connection, transaction

from iothub.models import Role, User
from tests.conftest import assert_problem, client_for
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

USERS_URL = "/api/v1/users/"
NEW_USER = {"username": "carol", "email": "carol@example.com", "role": "operator", "password": "a-long-passphrase-9"}


def test_admin_manages_users(admin_client, api_client):
    created = admin_client.post(USERS_URL, NEW_USER)
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["role"] == "operator"
    assert "password" not in body
    user_url = f"{USERS_URL}{body['id']}/"

    # The password was stored hashed and works for a token.
    token = api_client.post("/api/v1/auth/token/", {"username": "carol", "password": NEW_USER["password"]})
    assert token.status_code == 200

    assert admin_client.patch(user_url, {"role": "viewer"}).json()["role"] == "viewer"
    assert User.objects.get(username="carol").role == Role.VIEWER

    assert admin_client.patch(user_url, {"password": "another-long-passphrase-7"}).status_code == 200
    assert User.objects.get(username="carol").check_password("another-long-passphrase-7")

    listing = admin_client.get(USERS_URL, {"role": "viewer"})
    assert [user["username"] for user in listing.json()["results"]] == ["carol"]

    assert admin_client.delete(user_url).status_code == 204
    assert not User.objects.filter(username="carol").exists()


@pytest.mark.parametrize("role_client", ["operator", "viewer"], indirect=True)
def test_other_roles_may_not_touch_users(role_client, admin_user):
    assert_problem(role_client.get(USERS_URL), 403, "permission_denied")
    assert_problem(role_client.post(USERS_URL, NEW_USER), 403, "permission_denied")
    assert_problem(role_client.patch(f"{USERS_URL}{admin_user.pk}/", {"role": "viewer"}), 403)
    assert User.objects.get(pk=admin_user.pk).role == Role.ADMIN


def test_anonymous_may_not_list_users(api_client):
    assert_problem(api_client.get(USERS_URL), 401, "not_authenticated")


@pytest.mark.parametrize(
    ("change", "pointer", "code"),
    [
        ({"password": "123"}, "/password", "invalid"),
        ({"password": None}, "/password", "null"),
        ({"role": "root"}, "/role", "invalid_choice"),
        ({"username": "admin"}, "/username", "unique"),
        ({"is_superuser": True}, "/is_superuser", "unknown_field"),
    ],
)
def test_invalid_user_writes_are_problems_and_change_nothing(admin_client, change, pointer, code):
    before = User.objects.count()
    body = assert_problem(admin_client.post(USERS_URL, {**NEW_USER, **change}), 400, "invalid")
    assert any(error["pointer"] == pointer and error["code"] == code for error in body["errors"]), body
    assert User.objects.count() == before


def test_password_is_required_on_create(admin_client):
    payload = {key: value for key, value in NEW_USER.items() if key != "password"}
    body = assert_problem(admin_client.post(USERS_URL, payload), 400)
    assert body["errors"][0]["pointer"] == "/password"


def test_role_is_checked_by_the_database():
    user = UserFactory()
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE users SET role = 'root' WHERE id = %s", [user.pk])


def test_staff_and_superuser_follow_the_role():
    # Every role uses Admin (what it sees there: tests/security/test_admin_roles.py); only admins are superusers.
    viewer = UserFactory(role=Role.VIEWER)
    assert viewer.is_staff
    assert not viewer.is_superuser
    assert not viewer.has_perm("rules.change_event")
    viewer.role = Role.OPERATOR
    assert viewer.has_perm("rules.change_event")
    assert not viewer.is_superuser
    viewer.role = Role.ADMIN
    assert viewer.is_staff
    assert viewer.is_superuser
    assert User.objects.create_superuser("root", "root@example.com", PASSWORD).role == Role.ADMIN


def test_authorization_reads_the_current_role_not_the_token_claim(admin_user):
    user = UserFactory(role=Role.VIEWER)
    client = client_for(user)  # token minted while a viewer
    assert client.get(USERS_URL).status_code == 403
    User.objects.filter(pk=user.pk).update(role=Role.ADMIN)
    assert client.get(USERS_URL).status_code == 200
    User.objects.filter(pk=user.pk).update(role=Role.VIEWER)
    assert client.get(USERS_URL).status_code == 403


def test_deactivated_users_lose_access_at_once(admin_user):
    user = UserFactory(role=Role.ADMIN)  # not the last active admin (admin_user), who could not be deactivated
    client = client_for(user)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert_problem(client.get("/api/v1/me/"), 401)


@pytest.mark.parametrize("role_client", ["admin", "operator", "viewer"], indirect=True)
def test_me_describes_the_caller(role_client):
    body = role_client.get("/api/v1/me/").json()
    assert body["username"] == role_client.user.username
    assert body["role"] == role_client.user.role
