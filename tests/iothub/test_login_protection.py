"""The brute-force protection (iothub/login_protection.py) against the real database: the counters, their expiry,
reset on success, the refresh endpoint, concurrency, pruning, Admin and the management command. The same through
app server workers and nginx: tests/deploy/test_login_protection_stack.py."""

import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, connections, transaction
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from iothub.client_address import client_address
from iothub.login_protection import PRUNE_PER_ATTEMPT, LoginThrottled, login_attempt_begin
from iothub.models import LoginCounter, LoginCounterKind
from tests.conftest import HTTPS, assert_problem
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
REFRESH_URL = "/api/v1/auth/token/refresh/"
ADMIN_LOGIN_URL = "/admin/login/"
HERE, ELSEWHERE = "198.51.100.7", "203.0.113.9"


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 600
    settings.LOGIN_LOCKOUT_SECONDS = 900
    settings.AUTH_THROTTLE_RATE = (10, 60)


def client_from(address):
    """An API client whose requests come through a trusted proxy (loopback) on behalf of ``address``."""
    return APIClient(**HTTPS, HTTP_X_FORWARDED_FOR=address)


def login(address, username, password="wrong"):
    return client_from(address).post(TOKEN_URL, {"username": username, "password": password})


def account_counter(username, address=HERE):
    return LoginCounter.objects.get(kind=LoginCounterKind.ACCOUNT, username=username, client_address=address)


def expire(**filters):
    """Moves counters' windows into the past, as the clock would."""
    LoginCounter.objects.filter(**filters).update(window_ends_at=timezone.now() - timedelta(seconds=1))


def test_the_attempt_after_the_limit_is_a_429_problem_with_retry_after():
    UserFactory(username="alice")
    assert [login(HERE, "alice").status_code for _ in range(3)] == [401, 401, 401]
    response = login(HERE, "alice")
    body = assert_problem(response, 429, "throttled")
    assert body["detail"].startswith("Too many failed logins to this account from your address.")
    assert 890 <= int(response["Retry-After"]) <= 900
    # Locked means the password is not even checked: the right one is refused too.
    assert_problem(login(HERE, "alice", PASSWORD), 429, "throttled")


def test_a_lockout_touches_neither_other_users_nor_other_addresses():
    UserFactory(username="alice")
    UserFactory(username="bob")
    for _ in range(4):
        login(HERE, "alice")
    assert login(HERE, "alice", PASSWORD).status_code == 429
    # The last admin cannot be locked out from elsewhere: the lock is per (username, address).
    assert login(ELSEWHERE, "alice", PASSWORD).status_code == 200
    assert login(HERE, "bob", PASSWORD).status_code == 200


def test_a_successful_login_resets_the_account_counter():
    UserFactory(username="alice")
    login(HERE, "alice")
    login(HERE, "alice")
    assert account_counter("alice").attempts == 2
    assert login(HERE, "alice", PASSWORD).status_code == 200
    assert not LoginCounter.objects.filter(kind=LoginCounterKind.ACCOUNT).exists()
    # The address counter keeps the two failures, not the success.
    assert LoginCounter.objects.get(kind=LoginCounterKind.ADDRESS).attempts == 2
    assert [login(HERE, "alice").status_code for _ in range(4)] == [401, 401, 401, 429]


def test_refused_attempts_do_not_extend_the_lockout():
    UserFactory(username="alice")
    for _ in range(3):
        login(HERE, "alice")
    locked = account_counter("alice")
    for _ in range(3):
        assert login(HERE, "alice").status_code == 429
    after = account_counter("alice")
    assert (after.attempts, after.window_ends_at) == (3, locked.window_ends_at)


def test_a_lockout_expires_and_the_count_starts_again():
    UserFactory(username="alice")
    for _ in range(4):
        login(HERE, "alice")
    assert login(HERE, "alice", PASSWORD).status_code == 429
    expire(kind=LoginCounterKind.ACCOUNT)
    assert login(HERE, "alice").status_code == 401
    assert account_counter("alice").attempts == 1


def test_failures_older_than_the_window_are_forgotten():
    UserFactory(username="alice")
    login(HERE, "alice")
    login(HERE, "alice")
    expire(kind=LoginCounterKind.ACCOUNT)
    assert [login(HERE, "alice").status_code for _ in range(4)] == [401, 401, 401, 429]


def test_the_lockout_lasts_its_own_duration_from_the_last_counted_failure(settings):
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 60
    settings.LOGIN_LOCKOUT_SECONDS = 3600
    UserFactory(username="alice")
    for _ in range(3):
        login(HERE, "alice")
    remaining = account_counter("alice").window_ends_at - timezone.now()
    assert timedelta(seconds=3590) < remaining <= timedelta(seconds=3600)


def test_unknown_usernames_count_like_known_ones():
    """Otherwise the 429 would tell which usernames exist."""
    assert [login(HERE, "nobody").status_code for _ in range(4)] == [401, 401, 401, 429]


def test_a_spray_of_usernames_from_one_address_is_throttled_per_address(settings):
    settings.AUTH_THROTTLE_RATE = (5, 60)
    UserFactory(username="alice")
    statuses = [login(HERE, f"guess{attempt}").status_code for attempt in range(6)]
    assert statuses == [401] * 5 + [429]
    body = assert_problem(login(HERE, "alice", PASSWORD), 429, "throttled")
    assert body["detail"].startswith("Too many failed logins from your address.")
    assert login(ELSEWHERE, "alice", PASSWORD).status_code == 200


def test_refresh_failures_count_against_the_address_and_successes_do_not(settings):
    settings.AUTH_THROTTLE_RATE = (3, 60)
    user = UserFactory(username="alice")
    good = str(RefreshToken.for_user(user))
    client = client_from(HERE)
    assert client.post(REFRESH_URL, {"refresh": good}).status_code == 200
    statuses = [client.post(REFRESH_URL, {"refresh": f"garbage{n}"}).status_code for n in range(4)]
    assert statuses == [401, 401, 401, 429]
    response = client.post(REFRESH_URL, {"refresh": str(RefreshToken.for_user(user))})
    assert_problem(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
    assert client_from(ELSEWHERE).post(REFRESH_URL, {"refresh": str(RefreshToken.for_user(user))}).status_code == 200
    # ...and the token endpoint from the throttled address is refused as well: one budget per address.
    assert login(HERE, "alice", PASSWORD).status_code == 429


def test_a_client_cannot_pick_its_address_without_a_trusted_proxy(settings):
    settings.TRUSTED_PROXIES = []
    UserFactory(username="alice")
    statuses = [login(f"203.0.113.{n}", "alice").status_code for n in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert set(LoginCounter.objects.values_list("client_address", flat=True)) == {"127.0.0.1"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_attempts_never_get_past_the_limit():
    """Each attempt takes its number atomically: of 12 at once on 12 connections, exactly the limit (3) get in."""
    admitted, refused = [], []
    start = threading.Barrier(12)

    def attempt():
        try:
            start.wait(timeout=10)
            try:
                login_attempt_begin(username="alice", address=HERE)
                admitted.append(1)
            except LoginThrottled:
                refused.append(1)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert (len(admitted), len(refused)) == (3, 9)
    assert account_counter("alice").attempts == 3


def test_expired_counters_are_pruned_by_later_attempts():
    past = timezone.now() - timedelta(minutes=1)
    LoginCounter.objects.bulk_create(
        LoginCounter(
            kind=LoginCounterKind.ACCOUNT,
            username=f"sprayed{n}",
            client_address=HERE,
            attempts=1,
            window_ends_at=past,
            last_attempt_at=past,
        )
        for n in range(PRUNE_PER_ATTEMPT + 20)
    )
    login(HERE, "alice")
    assert LoginCounter.objects.filter(username__startswith="sprayed").count() == 20
    login(HERE, "alice")
    assert not LoginCounter.objects.filter(username__startswith="sprayed").exists()
    # A live counter is never pruned.
    assert account_counter("alice").attempts == 2


def test_a_very_long_username_is_counted_under_its_first_150_characters():
    long_name = "x" * 5000
    assert [login(HERE, long_name).status_code for _ in range(4)] == [401, 401, 401, 429]
    assert account_counter("x" * 150).attempts == 3


# --- Admin ---------------------------------------------------------------------------------------------------------


def admin_login(client, username, password="wrong", address=HERE):
    return client.post(
        ADMIN_LOGIN_URL,
        {"username": username, "password": password, "next": "/admin/"},
        secure=True,
        HTTP_X_FORWARDED_FOR=address,
    )


def test_admin_login_is_protected_with_a_429_and_a_clear_message(client):
    UserFactory(username="root", role="admin")
    for _ in range(3):
        response = admin_login(client, "root")
        assert response.status_code == 200
        assert b"Please enter the correct username and password" in response.content
    response = admin_login(client, "root", PASSWORD)
    assert response.status_code == 429
    assert b"Too many failed logins to this account from your address. Try again in 15 minute(s)." in response.content
    assert 890 <= int(response["Retry-After"]) <= 900
    # The same counters as the API: the token endpoint is locked for this pair too, and another address is not.
    assert login(HERE, "root", PASSWORD).status_code == 429
    response = admin_login(client, "root", PASSWORD, address=ELSEWHERE)
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


@pytest.mark.parametrize(
    ("username", "counted_as"),
    [
        # Refused by the form: not an attempt.
        ("root\x00", None),
        ("", None),
        # Attempts: Django's form checks no length, the counter keeps the first 150 characters.
        ("r" * 5000, "r" * 150),
        ("root' OR '1'='1", "root' OR '1'='1"),
    ],
)
def test_malformed_admin_logins_are_form_errors(client, username, counted_as):
    UserFactory(username="root", role="admin")
    response = admin_login(client, username)
    assert response.status_code == 200
    assert b"errornote" in response.content or b"errorlist" in response.content
    counted = LoginCounter.objects.filter(kind=LoginCounterKind.ACCOUNT).values_list("username", flat=True)
    assert list(counted) == ([counted_as] if counted_as else [])


def test_a_successful_admin_login_resets_the_counter(client):
    UserFactory(username="root", role="admin")
    admin_login(client, "root")
    admin_login(client, "root")
    assert admin_login(client, "root", PASSWORD).status_code == 302
    assert not LoginCounter.objects.filter(kind=LoginCounterKind.ACCOUNT).exists()


def test_admins_see_lockouts_in_admin_and_clear_them(client, admin_user):
    UserFactory(username="alice")
    for _ in range(3):
        login(HERE, "alice")
    login(ELSEWHERE, "bob")
    client.force_login(admin_user)

    locked = client.get("/admin/iothub/logincounter/", {"locked": "yes"}, secure=True)
    assert locked.status_code == 200
    alice = account_counter("alice")
    bob = account_counter("bob", ELSEWHERE)
    assert f"/admin/iothub/logincounter/{alice.pk}/change/".encode() in locked.content
    assert f"/admin/iothub/logincounter/{bob.pk}/change/".encode() not in locked.content
    detail = client.get(f"/admin/iothub/logincounter/{alice.pk}/change/", secure=True)
    assert detail.status_code == 200
    assert HERE.encode() in detail.content

    response = client.post(
        "/admin/iothub/logincounter/",
        {"action": "clear", "_selected_action": [alice.pk]},
        secure=True,
    )
    assert response.status_code == 302
    assert not LoginCounter.objects.filter(pk=alice.pk).exists()
    assert login(HERE, "alice", PASSWORD).status_code == 200


def test_login_counters_cannot_be_added_or_edited_in_admin(client, admin_user):
    login(HERE, "alice")
    client.force_login(admin_user)
    assert client.get("/admin/iothub/logincounter/add/", secure=True).status_code == 403
    counter = account_counter("alice")
    response = client.post(
        f"/admin/iothub/logincounter/{counter.pk}/change/", {"attempts": 0, "username": "x"}, secure=True
    )
    assert response.status_code == 403
    assert account_counter("alice").attempts == 1


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_only_admins_see_login_counters(client, role):
    login(HERE, "alice")
    client.force_login(UserFactory(username="someone", role=role))
    response = client.get("/admin/iothub/logincounter/", secure=True)
    assert response.status_code in (302, 403)
    assert b"alice" not in response.content


# --- the management command ----------------------------------------------------------------------------------------


def _lock(username, address):
    for _ in range(3):
        login(address, username)


def test_clear_login_lockouts_by_username_address_or_all(capsys):
    _lock("alice", HERE)
    _lock("alice", ELSEWHERE)
    _lock("bob", HERE)

    call_command("clear_login_lockouts", "--username", "alice")
    assert "Cleared 2 login counter(s)." in capsys.readouterr().out
    assert set(LoginCounter.objects.filter(kind=LoginCounterKind.ACCOUNT).values_list("username", flat=True)) == {"bob"}

    call_command("clear_login_lockouts", "--address", HERE)
    assert "Cleared 2 login counter(s)." in capsys.readouterr().out  # bob's account counter and the address's
    assert list(LoginCounter.objects.values_list("kind", "client_address")) == [("address", ELSEWHERE)]

    _lock("carol", HERE)
    call_command("clear_login_lockouts")
    assert not LoginCounter.objects.exists()


def test_the_counter_rows_obey_their_constraints():
    """An address counter has no username, an account counter has one."""
    now = timezone.now()
    for kind, username in [(LoginCounterKind.ADDRESS, "alice"), (LoginCounterKind.ACCOUNT, "")]:
        with pytest.raises(IntegrityError), transaction.atomic():
            LoginCounter.objects.create(
                kind=kind, username=username, client_address=HERE, attempts=1, window_ends_at=now, last_attempt_at=now
            )
    with connection.cursor() as cursor, pytest.raises(IntegrityError), transaction.atomic():
        cursor.execute(
            "INSERT INTO login_counters (kind, username, client_address, attempts, window_ends_at, last_attempt_at)"
            " VALUES ('account', 'a', %s, -1, now(), now())",
            [HERE],
        )


# --- the client address -------------------------------------------------------------------------------------------


def _request(peer, forwarded=None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return RequestFactory().get("/", REMOTE_ADDR=peer, **extra)


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # A peer that is not a trusted proxy is the client, whatever it writes.
        ("198.51.100.7", "203.0.113.9", "198.51.100.7"),
        # The proxy's header names the client...
        ("127.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("10.0.3.4", "2001:db8::1", "2001:db8::1"),
        # ...read from the right: what the client prepended itself is not believed.
        ("127.0.0.1", "192.0.2.66, 203.0.113.9", "203.0.113.9"),
        # Proxies in a chain on trusted networks are skipped.
        ("127.0.0.1", "203.0.113.9, 10.0.0.5", "203.0.113.9"),
        # Garbage to the left of a good address leaves the good one; garbage alone leaves the peer.
        ("127.0.0.1", "not-an-address, 203.0.113.9", "203.0.113.9"),
        ("127.0.0.1", "not-an-address", "127.0.0.1"),
        ("127.0.0.1", None, "127.0.0.1"),
        # One client, one key, however its socket spelled it.
        ("::ffff:198.51.100.7", None, "198.51.100.7"),
        ("", None, "0.0.0.0"),
    ],
)
def test_client_address(peer, forwarded, client):
    assert client_address(_request(peer, forwarded)) == client
