"""No lock-out: the last active admin can't be demoted, deactivated or deleted — through the API, Admin, or SQL —
and two admins demoting each other at the same moment leave one (trigger users_keep_an_active_admin, sql/triggers/)."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
from django.db import DatabaseError, connection, transaction

from iothub.models import LAST_ADMIN_SQLSTATE, Role, User
from tests.conftest import assert_problem, client_for, connect_separately
from tests.factories import PASSWORD, UserFactory

USERS_URL = "/api/v1/users/"
HTTPS = {"secure": True}


def active_admins():
    return set(User.objects.filter(role=Role.ADMIN, is_active=True).values_list("username", flat=True))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("patch", {"role": "operator"}),
        ("patch", {"is_active": False}),
        ("put", {"username": "admin", "role": "viewer", "is_active": True}),
        ("delete", None),
    ],
)
def test_the_last_admin_cannot_be_taken_away_through_the_api(admin_user, admin_client, method, body):
    url = f"{USERS_URL}{admin_user.pk}/"
    response = getattr(admin_client, method)(url, body, format="json")
    problem = assert_problem(response, 409, "last_admin")
    assert problem["detail"] == (
        "admin is the last active admin. IoT Hub keeps at least one active admin: make another user an active admin "
        "first."
    )
    assert active_admins() == {"admin"}
    assert admin_client.get(USERS_URL).status_code == 200


@pytest.mark.django_db
def test_an_admin_may_go_once_another_one_is_active(admin_user, admin_client):
    UserFactory(username="deputy", role=Role.OPERATOR)
    deputy = User.objects.get(username="deputy")
    assert_problem(admin_client.patch(f"{USERS_URL}{admin_user.pk}/", {"role": "viewer"}), 409, "last_admin")
    assert admin_client.patch(f"{USERS_URL}{deputy.pk}/", {"role": "admin"}).status_code == 200
    assert admin_client.patch(f"{USERS_URL}{admin_user.pk}/", {"role": "viewer"}).status_code == 200
    assert active_admins() == {"deputy"}
    assert_problem(client_for(deputy).delete(f"{USERS_URL}{deputy.pk}/"), 409, "last_admin")


@pytest.mark.django_db
def test_an_admin_changing_their_password_can_log_in_again(admin_user, admin_client, api_client):
    response = admin_client.patch(f"{USERS_URL}{admin_user.pk}/", {"password": "a-new-long-passphrase-5"})
    assert response.status_code == 200
    tokens = api_client.post("/api/v1/auth/token/", {"username": "admin", "password": "a-new-long-passphrase-5"})
    assert tokens.status_code == 200
    assert api_client.post("/api/v1/auth/logout/", {"refresh": tokens.json()["refresh"]}).status_code == 204
    again = api_client.post("/api/v1/auth/token/", {"username": "admin", "password": "a-new-long-passphrase-5"})
    assert again.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE users SET is_active = false",
        "UPDATE users SET role = 'viewer' WHERE role = 'admin'",
        "DELETE FROM users WHERE role = 'admin'",
    ],
)
def test_the_database_refuses_any_statement_that_leaves_no_admin(statement):
    UserFactory(username="first", role=Role.ADMIN)
    UserFactory(username="second", role=Role.ADMIN)
    with pytest.raises(DatabaseError) as raised, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert raised.value.__cause__.pgcode == LAST_ADMIN_SQLSTATE
    assert active_admins() == {"first", "second"}


@pytest.mark.django_db
def test_users_other_than_the_last_admin_come_and_go_freely(admin_user):
    other = UserFactory(username="other", role=Role.ADMIN)
    viewer = UserFactory(username="viewer", role=Role.VIEWER)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE users SET is_active = false WHERE id IN (%s, %s)", [other.pk, viewer.pk])
        cursor.execute("DELETE FROM users WHERE id IN (%s, %s)", [other.pk, viewer.pk])
    assert active_admins() == {"admin"}


@pytest.fixture
def admin_site(client, admin_user):
    assert client.login(username="admin", password=PASSWORD)
    return client


def user_form(user, **fields):
    return {
        "username": user.username,
        "email": user.email,
        "first_name": "",
        "last_name": "",
        "role": user.role,
        "is_active": "on",
        **fields,
    }


def refused_in_admin(client, response):
    """The page after a refused POST: back where it came from, with the database's message."""
    assert response.status_code == 302, getattr(response.context, "get", lambda _: None)("errors")
    page = client.get(response["Location"], **HTTPS).content.decode()
    # Admin's template capitalises messages: "Admin is the last active admin. …"
    return '<li class="error">Admin is the last active admin. IoT Hub keeps at least one active admin' in page


@pytest.mark.django_db
def test_admin_refuses_to_demote_or_deactivate_the_last_admin(admin_site, admin_user):
    url = f"/admin/iothub/user/{admin_user.pk}/change/"
    for change in ({"role": "viewer"}, {"is_active": ""}):
        assert refused_in_admin(admin_site, admin_site.post(url, user_form(admin_user, **change), **HTTPS))
        assert active_admins() == {"admin"}
    # The same form, with nothing taken away, saves.
    response = admin_site.post(url, user_form(admin_user, first_name="Ada"), **HTTPS)
    assert response.status_code == 302
    assert User.objects.get(pk=admin_user.pk).first_name == "Ada"


@pytest.mark.django_db
def test_admin_refuses_to_delete_the_last_admin(admin_site, admin_user):
    delete = admin_site.post(f"/admin/iothub/user/{admin_user.pk}/delete/", {"post": "yes"}, **HTTPS)
    assert refused_in_admin(admin_site, delete)
    bulk = admin_site.post(
        "/admin/iothub/user/",
        {"action": "delete_selected", "_selected_action": [admin_user.pk], "post": "yes", "index": 0},
        **HTTPS,
    )
    assert refused_in_admin(admin_site, bulk)
    assert active_admins() == {"admin"}


@pytest.mark.django_db
def test_admin_deletes_an_admin_who_is_not_the_last(admin_site, admin_user):
    other = UserFactory(username="other", role=Role.ADMIN)
    response = admin_site.post(f"/admin/iothub/user/{other.pk}/delete/", {"post": "yes"}, **HTTPS)
    assert response.status_code == 302
    assert active_admins() == {"admin"}


def _wait_for_advisory_lock_wait(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    with connect_separately() as observer, observer.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted", [pid]
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.05)
    pytest.fail("the second transaction never waited for the first")


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one():
    alice = UserFactory(username="alice", role=Role.ADMIN)
    bob = UserFactory(username="bob", role=Role.ADMIN)
    first, second = connect_separately(), connect_separately()
    outcome = {}

    def demote_alice():
        try:
            with second.cursor() as cursor:
                cursor.execute("UPDATE users SET role = 'viewer' WHERE id = %s", [alice.pk])
            second.commit()
            outcome["alice"] = "demoted"
        except psycopg2.Error as error:
            second.rollback()
            outcome["alice"] = error.pgcode

    try:
        with first.cursor() as cursor:  # a transaction left open: bob demoted, not committed yet
            cursor.execute("UPDATE users SET role = 'viewer' WHERE id = %s", [bob.pk])
        thread = threading.Thread(target=demote_alice)
        thread.start()
        # Without the trigger's lock, the second would see bob still an admin and succeed now.
        _wait_for_advisory_lock_wait(second.get_backend_pid())
        first.commit()
        thread.join(timeout=10)
    finally:
        first.close()
        second.close()
    assert outcome == {"alice": LAST_ADMIN_SQLSTATE}
    assert active_admins() == {"alice"}


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_through_the_api_leave_one():
    alice = UserFactory(username="alice", role=Role.ADMIN)
    bob = UserFactory(username="bob", role=Role.ADMIN)
    clients = {"alice": client_for(alice), "bob": client_for(bob)}
    targets = {"alice": bob, "bob": alice}
    start = threading.Barrier(2)

    def demote_the_other(name):
        try:
            start.wait()
            return clients[name].patch(f"{USERS_URL}{targets[name].pk}/", {"role": "viewer"}).status_code
        finally:
            connection.close()  # this thread's own connection

    for _ in range(5):
        User.objects.filter(pk__in=[alice.pk, bob.pk]).update(role=Role.ADMIN)
        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(pool.map(demote_the_other, ["alice", "bob"]))
        # The loser is refused by the trigger (409) or, if the winner committed first, by its new role (403).
        assert statuses[0] == 200
        assert statuses[1] in (403, 409)
        assert len(active_admins()) == 1
