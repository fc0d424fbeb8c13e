"""Rules and events in Django Admin: validation messages an admin understands, acknowledge/resolve actions."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext

from iothub.models import Role
from rules import services
from rules.models import Event, EventStatus, Rule
from tests.factories import PASSWORD, DeviceFactory, NotificationChannelFactory, RuleFactory, UserFactory

from .conftest import insert_readings

pytestmark = pytest.mark.django_db

HTTPS = {"secure": True}
INLINE = {
    "rule_channels-TOTAL_FORMS": "1",
    "rule_channels-INITIAL_FORMS": "0",
    "rule_channels-MIN_NUM_FORMS": "0",
    "rule_channels-MAX_NUM_FORMS": "1000",
}


@pytest.fixture
def admin_site_client(client):
    UserFactory(username="boss", role=Role.ADMIN)
    assert client.login(username="boss", password=PASSWORD)
    return client


def rule_form(**fields):
    return {
        "name": "too hot",
        "description": "",
        "enabled": "on",
        "kind": "threshold",
        "metric": "temperature",
        "operator": "gt",
        "threshold_type": "number",
        "threshold": "30",
        "severity": "warning",
        "message_template": "{device_name}: {metric} is {value}",
        "dedupe": "on",
        **INLINE,
        **fields,
    }


def form_errors(response):
    """The admin form's and inlines' errors, to say why a POST did not redirect."""
    context = response.context
    inlines = [(inline.formset.errors, inline.formset.non_form_errors()) for inline in context["inline_admin_formsets"]]
    return context["adminform"].form.errors, inlines


def test_an_admin_adds_a_rule_with_a_channel(admin_site_client):
    channel = NotificationChannelFactory()
    response = admin_site_client.post(
        "/admin/rules/rule/add/", rule_form(**{"rule_channels-0-channel": channel.pk}), **HTTPS
    )
    assert response.status_code == 302, form_errors(response)
    rule = Rule.objects.get()
    assert (rule.threshold, list(rule.channels.all())) == (30, [channel])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"threshold": "thirty"}, "Enter a number, like 30 or 21.5"),
        ({"threshold_type": "string", "threshold": "30"}, "compares numbers: the threshold must be a number"),
        ({"operator": "eq", "threshold_type": "boolean", "threshold": "yes"}, "A true/false threshold is true"),
        ({"metric": "bad name!"}, "starts with a letter"),
        ({"message_template": "{temp}"}, "Unknown placeholder {temp}"),
    ],
)
def test_bad_rules_get_messages_an_admin_understands(admin_site_client, fields, message):
    response = admin_site_client.post("/admin/rules/rule/add/", rule_form(**fields), **HTTPS)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Rule.objects.exists()


def test_both_targets_are_refused_in_admin(admin_site_client):
    device = DeviceFactory()
    response = admin_site_client.post(
        "/admin/rules/rule/add/", rule_form(device=device.pk, device_type=device.device_type_id), **HTTPS
    )
    assert "not both" in response.content.decode()
    assert not Rule.objects.exists()


def test_rule_changelist_filters_and_search(admin_site_client):
    RuleFactory(name="boiler overheating", severity="critical")
    RuleFactory(name="door open", severity="info")
    response = admin_site_client.get("/admin/rules/rule/", {"severity__exact": "critical", "q": "boiler"}, **HTTPS)
    assert response.status_code == 200
    content = response.content.decode()
    assert "boiler overheating" in content
    assert "door open" not in content


def test_events_are_acknowledged_and_resolved_by_admin_actions(admin_site_client):
    RuleFactory()
    first, second = DeviceFactory(), DeviceFactory()
    now = datetime.now(UTC)
    insert_readings([(first.pk, now, {"temperature": 99}), (second.pk, now, {"temperature": 99})])
    events = list(Event.objects.order_by("id"))
    assert admin_site_client.get("/admin/rules/event/", **HTTPS).status_code == 200

    def act(action, events):
        admin_site_client.post(
            "/admin/rules/event/", {"action": action, "_selected_action": [event.pk for event in events]}, **HTTPS
        )
        return admin_site_client.get("/admin/rules/event/", **HTTPS).content.decode()  # shows the messages

    assert "1 event(s) acknowledged." in act("acknowledge", events[:1])
    page = act("acknowledge", events)
    assert "1 event(s) acknowledged." in page
    assert "1 event(s) not acknowledged: their status (acknowledged)" in page
    admin_site_client.post("/admin/rules/event/", {"action": "resolve", "_selected_action": [events[0].pk]}, **HTTPS)
    events[0].refresh_from_db()
    assert events[0].status == EventStatus.RESOLVED
    assert events[0].resolved_by.username == "boss"
    assert admin_site_client.get(f"/admin/rules/event/{events[0].pk}/change/", **HTTPS).status_code == 200


def test_the_admin_form_shows_the_new_fields_with_help_texts(admin_site_client):
    page = admin_site_client.get("/admin/rules/rule/add/", **HTTPS).content.decode()
    for field in ("clear_threshold", "for_seconds", "max_gap_seconds"):
        assert f'name="{field}"' in page
        assert Rule._meta.get_field(field).help_text.split(":")[0].replace("'", "&#x27;") in page


# Event triage: the list, the event's page and their history.

NOW = datetime.now(UTC).replace(microsecond=0)


def raise_events(device, *severities, at=NOW):
    """One event per severity on ``device``, each from a rule of its own metric; returns them in that order."""
    events = []
    for index, severity in enumerate(severities):
        metric = f"m{index}_{severity}"
        rule = Rule.objects.filter(metric=metric).first() or RuleFactory(
            name=f"{severity} {index}", metric=metric, severity=severity
        )
        insert_readings([(device.pk, at + timedelta(milliseconds=index), {metric: 99})])
        events.append(Event.objects.get(rule=rule, device=device))
    return events


def listed(client, **params):
    page = client.get("/admin/rules/event/", params, **HTTPS)
    assert page.status_code == 200
    return [event.pk for event in page.context["cl"].result_list]


def test_the_event_list_shows_open_and_acknowledged_events_unless_asked(admin_site_client):
    opened, acknowledged, resolved = raise_events(DeviceFactory(), "warning", "warning", "warning")
    services.event_acknowledge(event=acknowledged, user=None)
    services.event_resolve(event=resolved, user=None)

    assert sorted(listed(admin_site_client)) == sorted([opened.pk, acknowledged.pk])
    assert listed(admin_site_client, status="resolved") == [resolved.pk]
    assert listed(admin_site_client, status="open") == [opened.pk]
    assert sorted(listed(admin_site_client, status="all")) == sorted([opened.pk, acknowledged.pk, resolved.pk])
    html = admin_site_client.get("/admin/rules/event/", **HTTPS).content.decode()
    assert re.search(r'<li class="selected">\s*<a href="\?status=unresolved"[^>]*>Open or acknowledged</a>', html)


def test_the_event_list_ranks_and_colours_severities(admin_site_client):
    info, critical, warning = raise_events(DeviceFactory(), "info", "critical", "warning")
    assert listed(admin_site_client) == [critical.pk, warning.pk, info.pk]  # most serious first by default
    # The severity column (index 1, after the checkbox) sorts by rank both ways, not alphabetically.
    assert listed(admin_site_client, o="1") == [info.pk, warning.pk, critical.pk]
    assert listed(admin_site_client, o="-1") == [critical.pk, warning.pk, info.pk]
    html = admin_site_client.get("/admin/rules/event/", **HTTPS).content.decode()
    for severity in ("info", "warning", "critical"):
        assert f'<span class="iothub-severity iothub-severity-{severity}">{severity}</span>' in html
    assert "rules/admin.css" in html


def test_the_event_list_shows_message_count_and_times_in_a_few_queries(admin_site_client):
    device = DeviceFactory(name="boiler")
    (event,) = raise_events(device, "critical")
    Event.objects.filter(pk=event.pk).update(message="x" * 300, occurrence_count=7)

    def queries_for_the_list():
        with CaptureQueriesContext(connection) as queries:
            assert admin_site_client.get("/admin/rules/event/", **HTTPS).status_code == 200
        return len(queries)

    few = queries_for_the_list()
    raise_events(DeviceFactory(), "info", "warning", "critical", "info")
    raise_events(DeviceFactory(), "info", "warning")
    assert queries_for_the_list() == few  # no query per row
    html = admin_site_client.get("/admin/rules/event/", **HTTPS).content.decode()
    assert "x" * 89 + "…" in html
    assert "x" * 91 not in html
    assert '<td class="field-occurrences">7</td>' in html
    assert f'<time datetime="{event.last_triggered_at.isoformat()}">' in html


def test_an_event_page_is_titled_by_its_device_and_acts_with_a_note(admin_site_client):
    device = DeviceFactory(name="Boiler room")
    (event,) = raise_events(device, "critical")
    url = f"/admin/rules/event/{event.pk}/change/"
    page = admin_site_client.get(url, **HTTPS).content.decode()
    title = re.search(r"<title>(.*?)</title>", page, re.DOTALL).group(1)
    assert "Boiler room" in title
    assert str(device.pk) not in title
    assert "Critical event on Boiler room" in page
    assert buttons(page) == {"Acknowledge", "Resolve"}
    assert "/delete/" not in page

    response = admin_site_client.post(f"/admin/rules/event/{event.pk}/acknowledge/", {"note": " on my way "}, **HTTPS)
    assert response.status_code == 302
    assert response["Location"] == url
    event.refresh_from_db()
    assert (event.status, event.acknowledged_note, event.acknowledged_by.username) == (
        "acknowledged",
        "on my way",
        "boss",
    )
    page = admin_site_client.get(url, **HTTPS).content.decode()
    assert "1 event(s) acknowledged." in page
    assert buttons(page) == {"Resolve"}

    admin_site_client.post(f"/admin/rules/event/{event.pk}/resolve/", {"note": "valve replaced"}, **HTTPS)
    event.refresh_from_db()
    assert (event.status, event.resolved_note) == ("resolved", "valve replaced")
    assert buttons(admin_site_client.get(url, **HTTPS).content.decode()) == set()
    assert history(event) == [
        ("boss", "Acknowledged with the note: on my way."),
        ("boss", "Resolved with the note: valve replaced."),
    ]
    history_page = admin_site_client.get(f"/admin/rules/event/{event.pk}/history/", **HTTPS).content.decode()
    assert "Acknowledged with the note: on my way." in history_page


def test_an_event_page_refuses_what_its_status_does_not_allow(admin_site_client):
    (event,) = raise_events(DeviceFactory(), "warning")
    services.event_resolve(event=event, user=None)
    admin_site_client.post(f"/admin/rules/event/{event.pk}/acknowledge/", {"note": "late"}, **HTTPS)
    event.refresh_from_db()
    assert (event.status, event.acknowledged_note) == ("resolved", "")
    assert history(event) == []
    page = admin_site_client.get(f"/admin/rules/event/{event.pk}/change/", **HTTPS).content.decode()
    assert "1 event(s) not acknowledged: their status (resolved)" in page


def test_a_note_too_long_for_the_api_changes_nothing_on_the_event_page(admin_site_client):
    (event,) = raise_events(DeviceFactory(), "warning")
    admin_site_client.post(f"/admin/rules/event/{event.pk}/acknowledge/", {"note": "x" * 2001}, **HTTPS)
    event.refresh_from_db()
    assert event.status == "open"
    page = admin_site_client.get(f"/admin/rules/event/{event.pk}/change/", **HTTPS).content.decode()
    assert "Nothing changed: Ensure this value has at most 2000 characters" in page
    assert admin_site_client.get(f"/admin/rules/event/{event.pk}/acknowledge/", **HTTPS).status_code == 405


def test_bulk_actions_record_each_event_in_its_history(admin_site_client):
    events = raise_events(DeviceFactory(), "info", "warning", "critical")
    services.event_acknowledge(event=events[0], user=None)
    admin_site_client.post(
        "/admin/rules/event/",
        {"action": "acknowledge", "_selected_action": [event.pk for event in events], "note": "batch", "index": 0},
        **HTTPS,
    )
    assert [history(event) for event in events] == [
        [],  # already acknowledged: refused, not recorded
        [("boss", "Acknowledged with the note: batch.")],
        [("boss", "Acknowledged with the note: batch.")],
    ]
    admin_site_client.post(
        "/admin/rules/event/", {"action": "resolve", "_selected_action": [events[0].pk], "index": 0}, **HTTPS
    )
    assert history(events[0]) == [("boss", "Resolved.")]


def test_no_delete_permission_for_events_even_for_admins(admin_site_client):
    (event,) = raise_events(DeviceFactory(), "warning")
    boss = admin_site_client.get("/admin/", **HTTPS).wsgi_request.user
    assert not boss.has_perm("rules.delete_event")
    assert not boss.has_perm("rules.add_event")
    html = admin_site_client.get("/admin/rules/event/", **HTTPS).content.decode()
    assert "delete_selected" not in html
    assert admin_site_client.get(f"/admin/rules/event/{event.pk}/delete/", **HTTPS).status_code == 403


def test_the_rule_list_counts_open_events_in_one_query(admin_site_client):
    first, second = raise_events(DeviceFactory(), "warning", "critical")
    raise_events(DeviceFactory(), "warning")
    services.event_resolve(event=second, user=None)

    def rule_list():
        with CaptureQueriesContext(connection) as queries:
            response = admin_site_client.get("/admin/rules/rule/", **HTTPS)
        assert response.status_code == 200
        return response, len(queries)

    page, queries = rule_list()
    assert {rule.name: rule.open_event_count for rule in page.context["cl"].result_list} == {
        first.rule_name: 2,
        second.rule_name: 0,
    }
    assert f'href="/admin/rules/event/?rule__id__exact={first.rule_id}">2</a>' in page.content.decode()
    assert sorted(listed(admin_site_client, rule__id__exact=first.rule_id)) == sorted(
        Event.objects.filter(rule=first.rule_id).values_list("pk", flat=True)
    )
    for index in range(5):
        raise_events(DeviceFactory(), "info", "warning", at=NOW + timedelta(seconds=index))
    assert rule_list()[1] == queries  # no query per rule


def buttons(html):
    return set(
        re.findall(
            r'<button type="submit" class="button" formaction="[^"]+" name="transition" value="\w+">(\w+)</button>',
            html,
        )
    )


def history(event):
    entries = LogEntry.objects.filter(object_id=str(event.pk), content_type__model="event").order_by(
        "action_time", "id"
    )
    return [(entry.user.username, entry.get_change_message()) for entry in entries]
