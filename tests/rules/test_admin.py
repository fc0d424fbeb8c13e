"""Rules and events in Django Admin: validation messages an admin understands, acknowledge/resolve actions."""

from datetime import UTC, datetime

import pytest

from iothub.models import Role
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
