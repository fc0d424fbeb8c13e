import pytest
from django.core.management import call_command

from iothub.models import Role, User
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

HTTPS = {"secure": True}


def test_admins_manage_users_with_roles_in_admin(client):
    boss = UserFactory(username="boss", role=Role.ADMIN)
    UserFactory(username="someone", role=Role.VIEWER)
    assert client.login(username="boss", password=PASSWORD)
    assert client.get("/admin/", **HTTPS).status_code == 200
    changelist = client.get("/admin/iothub/user/", {"role__exact": "viewer"}, **HTTPS)
    assert changelist.status_code == 200
    someone = User.objects.get(username="someone")
    assert f"/admin/iothub/user/{someone.pk}/change/".encode() in changelist.content
    assert f"/admin/iothub/user/{boss.pk}/change/".encode() not in changelist.content
    change = client.get(f"/admin/iothub/user/{someone.pk}/change/", **HTTPS)
    assert change.status_code == 200
    assert b'name="role"' in change.content
    assert b"is_superuser" not in change.content


def test_ensure_superuser_creates_the_admin_once(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "root")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-passphrase-9")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "root@example.com")
    call_command("ensure_superuser")
    root = User.objects.get(username="root")
    assert root.role == Role.ADMIN
    assert root.check_password("a-long-passphrase-9")

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "changed-passphrase-0")
    call_command("ensure_superuser")
    assert User.objects.get(username="root").check_password("a-long-passphrase-9")


def test_ensure_superuser_does_nothing_without_a_username(monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    call_command("ensure_superuser")
    assert not User.objects.exists()
