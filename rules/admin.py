"""Django Admin of the rules app: rules (validated like the API), events (read-only, acknowledge/resolve actions
with a note), notification channels (editable, target checked per kind) and notifications (read-only, a retry
action). Who may do what is iothub.access's table, through User.has_perm."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.text import Truncator

from iothub.access import may_read_secrets
from iothub.admin_site import ModelAdmin
from rules import services
from rules.admin_exports import export_events_csv
from rules.forms import NO_DATA_ROWS, THRESHOLD_ROWS, RuleAdminForm
from rules.models import (
    EVENT_TRANSITIONS,
    UNRESOLVED_STATUSES,
    Event,
    EventStatus,
    Notification,
    NotificationChannel,
    Rule,
    RuleChannel,
    RuleKind,
    severity_rank,
)
from rules.notifications import clean_channel_target, mask_channel_target

# The event list cuts messages to this many characters (the event's page shows them whole), so that its columns fit
# a 1400 px screen.
MESSAGE_CHARS = 90


def open_event_count(field):
    """How many open or acknowledged events name the row in ``field`` (``"device"``, ``"rule"``): a correlated
    subquery of the list's own query, so a page of rows costs one query (each count an index scan)."""
    unresolved = Event.objects.filter(**{field: OuterRef("pk")}, status__in=UNRESOLVED_STATUSES).order_by()
    return Coalesce(Subquery(unresolved.values(field).annotate(count=Count("*")).values("count")), 0)


def open_events_link(count, **lookup):
    """``count`` linking to the event list filtered by ``lookup`` (``device=…``, ``rule=…``): its default status
    filter shows the open and acknowledged ones."""
    if not count:
        return "0"
    query = urlencode({f"{field}__id__exact": value for field, value in lookup.items()})
    return format_html('<a href="{}?{}">{}</a>', reverse("admin:rules_event_changelist"), query, count)


class RuleChannelInline(admin.TabularInline):
    model = RuleChannel
    extra = 1
    verbose_name = "notification channel"
    verbose_name_plural = "notification channels (a pending notification per enabled channel for each new event)"

    def get_queryset(self, request):
        # Each row is labelled with its channel (RuleChannel.__str__).
        return super().get_queryset(request).select_related("channel")


@admin.register(Rule)
class RuleAdmin(ModelAdmin):
    # Rule.clean() gives the form the same messages as the API (threshold vs operator, targets, placeholders).
    form = RuleAdminForm
    change_form_template = "admin/rules/rule/change_form.html"
    list_display = [
        "name",
        "kind",
        "target",
        "condition",
        "severity",
        "open_events",
        "enabled",
        "dedupe",
        "auto_resolve",
        "updated_at",
    ]
    list_filter = ["kind", "enabled", "severity", "operator", "dedupe", "auto_resolve", "device_type"]
    search_fields = ["name", "description", "metric"]
    list_select_related = ["device", "device_type"]
    autocomplete_fields = ["device"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [RuleChannelInline]
    fieldsets = [
        (None, {"fields": ["name", "description", "enabled", "kind"]}),
        (
            "Target (a device type, a single device, or neither for every device)",
            {"fields": ["device_type", "device"]},
        ),
        (
            "Condition",
            {
                "fields": [
                    "metric",
                    "operator",
                    "threshold_type",
                    "threshold",
                    "no_data_seconds",
                    "severity",
                    "message_template",
                ],
                "description": (
                    "Threshold rules compare the metric of each reading with the threshold; their message may use "
                    "{device_name}, {metric}, {value}, {operator} and {threshold}. No-data rules wait for silence; "
                    "their message may use {device_name}, {metric}, {last_seen} and {silent_for}. Left at one kind's "
                    "default, the message becomes the other kind's default when the kind changes."
                ),
            },
        ),
        (
            "Events",
            {
                "fields": ["dedupe", "auto_resolve", "clear_threshold", "for_seconds", "max_gap_seconds"],
                "description": (
                    "A duration (for_seconds) opens the event only once the metric has matched that long; a clear "
                    "threshold makes auto_resolve wait for a reading past it (hysteresis). No-data events resolve "
                    "themselves on the next reading."
                ),
            },
        ),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def render_change_form(self, request, context, *args, **kwargs):
        context["rule_kind_rows"] = {RuleKind.THRESHOLD: THRESHOLD_ROWS, RuleKind.NO_DATA: NO_DATA_ROWS}
        return super().render_change_form(request, context, *args, **kwargs)

    @admin.display(description="target")
    def target(self, rule):
        return rule.target_label

    @admin.display(description="condition", ordering="metric")
    def condition(self, rule):
        if rule.is_no_data:
            return f"no {rule.metric or 'reading'} for {rule.no_data_seconds} s"
        return f"{rule.metric} {rule.get_operator_display()} {rule.threshold}"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(open_event_count=open_event_count("rule"))

    @admin.display(description="open events", ordering="open_event_count")
    def open_events(self, rule):
        return open_events_link(rule.open_event_count, rule=rule.pk)


class EventNoteForm(forms.Form):
    # The API's acknowledge/ and resolve/ take the same note.
    note = forms.CharField(
        required=False,
        max_length=2000,
        label="Note",
        widget=forms.TextInput(attrs={"size": 40, "placeholder": "a note for acknowledge/resolve (optional)"}),
    )


class EventActionForm(ActionForm, EventNoteForm):
    pass


UNRESOLVED = "unresolved"
EVERY_STATUS = "all"


class EventStatusFilter(admin.SimpleListFilter):
    """The events that still need someone (open and acknowledged) unless another status is chosen."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(UNRESOLVED, "Open or acknowledged"), *EventStatus.choices, (EVERY_STATUS, "All")]

    def chosen(self):
        return self.value() or UNRESOLVED

    def choices(self, changelist):
        # Django's own "All" link would mean no parameter, which here is the default (open or acknowledged).
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.chosen() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        chosen = self.chosen()
        if chosen == EVERY_STATUS:
            return queryset
        if chosen == UNRESOLVED:
            return queryset.filter(status__in=UNRESOLVED_STATUSES)
        return queryset.filter(status=chosen)


# Which buttons the event page shows for an event's status: EVENT_TRANSITIONS, as the API's endpoints.
TRANSITIONS = {
    EventStatus.ACKNOWLEDGED: ("acknowledge", "Acknowledge", services.event_acknowledge),
    EventStatus.RESOLVED: ("resolve", "Resolve", services.event_resolve),
}


def _utc(moment):
    """A compact UTC time for the lists and the event page (Django's default is long and localised)."""
    if moment is None:
        return "-"  # as Admin shows other empty values
    return format_html('<time datetime="{}">{}</time>', moment.isoformat(), f"{moment:%Y-%m-%d %H:%M:%S}")


def severity_badge(severity):
    return format_html('<span class="iothub-severity iothub-severity-{}">{}</span>', severity, severity)


@admin.register(Event)
class EventAdmin(ModelAdmin):
    """Events are written by the database; here they are triaged: read, acknowledged and resolved with a note, in bulk
    from the list or one at a time from the event's page, each step in the event's Admin history. Never added or
    deleted (iothub.access gives no role those permissions)."""

    list_display = [
        "severity_label",
        "status",
        "device_link",
        "rule_link",
        "short_message",
        "occurrences",
        "first_triggered",
        "last_triggered",
    ]
    list_display_links = ["short_message"]
    list_filter = [EventStatusFilter, "severity", "rule"]
    search_fields = ["rule_name", "message", "device__name", "device__serial_number"]
    list_select_related = ["device"]
    # Most serious first, then the most recently active.
    ordering = [severity_rank().desc(), "-last_triggered_at"]
    date_hierarchy = "triggered_at"
    actions = ["acknowledge", "resolve", export_events_csv]
    action_form = EventActionForm
    fieldsets = [
        (None, {"fields": ["severity_label", "status", "device_link", "rule_link", "message"]}),
        (
            "Occurrences",
            {"fields": ["first_triggered", "last_triggered", "occurrence_count", "trigger_values", "last_values"]},
        ),
        (
            "Handling",
            {
                "fields": [
                    "acknowledged_time",
                    "acknowledged_by",
                    "acknowledged_note",
                    "resolved_time",
                    "resolved_by",
                    "resolved_note",
                ]
            },
        ),
    ]
    readonly_fields = ["severity_label", "device_link", "rule_link", "first_triggered", "last_triggered"]
    readonly_fields += ["acknowledged_time", "resolved_time"]

    class Media:
        css = {"all": ["rules/admin.css"]}

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("device", "rule", "acknowledged_by", "resolved_by")

    def has_change_permission(self, request, obj=None):
        # The form stays read-only: acknowledge and resolve are the only changes, through the actions and buttons.
        return False

    def has_transition_permission(self, request):
        return request.user.has_perm("rules.change_event")

    @admin.display(description="severity", ordering=severity_rank())
    def severity_label(self, event):
        return severity_badge(event.severity)

    @admin.display(description="device", ordering="device__name")
    def device_link(self, event):
        url = reverse("admin:telemetry_device_change", args=[event.device_id])
        return format_html('<a href="{}">{}</a>', url, event.device.name)

    @admin.display(description="rule", ordering="rule_name")
    def rule_link(self, event):
        if event.rule_id is None:  # the rule was deleted; the event keeps its name
            return event.rule_name
        url = reverse("admin:rules_rule_change", args=[event.rule_id])
        return format_html('<a href="{}">{}</a>', url, event.rule_name)

    @admin.display(description="message")
    def short_message(self, event):
        return Truncator(event.message).chars(MESSAGE_CHARS)

    @admin.display(description="count", ordering="occurrence_count")
    def occurrences(self, event):
        return event.occurrence_count

    @admin.display(description="first triggered", ordering="triggered_at")
    def first_triggered(self, event):
        return _utc(event.triggered_at)

    @admin.display(description="last triggered", ordering="last_triggered_at")
    def last_triggered(self, event):
        return _utc(event.last_triggered_at)

    @admin.display(description="acknowledged at")
    def acknowledged_time(self, event):
        return _utc(event.acknowledged_at)

    @admin.display(description="resolved at")
    def resolved_time(self, event):
        return _utc(event.resolved_at)

    @admin.action(description="Acknowledge selected open events (with the note)", permissions=["transition"])
    def acknowledge(self, request, queryset):
        self._transition_and_report(request, queryset, EventStatus.ACKNOWLEDGED)

    @admin.action(description="Resolve selected events (with the note)", permissions=["transition"])
    def resolve(self, request, queryset):
        self._transition_and_report(request, queryset, EventStatus.RESOLVED)

    def _transition_and_report(self, request, events, status):
        # The action form checked the note (at most 2000 characters) before the action ran.
        note = request.POST.get("note", "").strip()
        _, _, transition = TRANSITIONS[status]
        changed, refused = 0, []
        for event in events:
            try:
                transition(event=event, user=request.user, note=note)
            except services.InvalidEventTransition:
                refused.append(event)
                continue
            changed += 1
            self.log_change(request, event, f"{status.label}" + (f" with the note: {note}" if note else "") + ".")
        if changed:
            self.message_user(request, f"{changed} event(s) {status}.", messages.SUCCESS)
        if refused:
            statuses = ", ".join(sorted({event.status for event in refused}))
            self.message_user(
                request,
                f"{len(refused)} event(s) not {status}: their status ({statuses}) doesn't allow it "
                f"(open → {EventStatus.ACKNOWLEDGED} → {EventStatus.RESOLVED}).",
                messages.WARNING,
            )

    # The event page's buttons: one POST per transition, to URLs of their own (the change form is read-only).

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        own = [
            path(
                f"<path:object_id>/{action}/",
                self.admin_site.admin_view(self.transition_view),
                {"status": status},
                name="{}_{}_{}".format(*info, action),
            )
            for status, (action, _, _) in TRANSITIONS.items()
        ]
        return own + super().get_urls()

    def transition_view(self, request, object_id, status):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_transition_permission(request):
            raise PermissionDenied
        event = self.get_object(request, unquote(object_id))
        if event is None:
            raise Http404("No such event.")
        form = EventNoteForm(request.POST)
        if form.is_valid():
            self._transition_and_report(request, [event], status)
        else:
            self.message_user(request, f"Nothing changed: {form.errors['note'][0]}", messages.ERROR)
        return HttpResponseRedirect(reverse("admin:rules_event_change", args=[event.pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and self.has_transition_permission(request):
            context["event_transitions"] = [
                (reverse(f"admin:rules_event_{action}", args=[obj.pk]), label)
                for status, (action, label, _) in TRANSITIONS.items()
                if status in EVENT_TRANSITIONS[obj.status]
            ]
            context["note_form"] = EventNoteForm()
        context["title"] = f"{obj.get_severity_display()} event on {obj.device.name}" if obj else context["title"]
        return super().render_change_form(request, context, add, change, form_url, obj)


class NotificationChannelForm(forms.ModelForm):
    class Meta:
        model = NotificationChannel
        fields = ["name", "kind", "target", "enabled"]
        help_texts = {
            "target": "email: one or more addresses separated by commas; webhook: the http(s) URL it posts to; "
            "log: an optional label for the log line.",
        }

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("kind"):
            try:
                cleaned["target"] = clean_channel_target(cleaned["kind"], cleaned.get("target", ""))
            except ValidationError as error:
                self.add_error("target", error)
        return cleaned


@admin.register(NotificationChannel)
class NotificationChannelAdmin(ModelAdmin):
    """Admins see and edit targets whole; other roles see them masked (they may not write channels anyway)."""

    form = NotificationChannelForm
    fields = ["name", "kind", "target", "enabled"]
    list_display = ["name", "kind", "target", "enabled", "updated_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "target"]

    def get_list_display(self, request):
        if may_read_secrets(request.user):
            return self.list_display
        return [name if name != "target" else "masked_target" for name in self.list_display]

    def get_search_fields(self, request):
        # Searching the targets would reveal a token a character at a time.
        return self.search_fields if may_read_secrets(request.user) else ["name"]

    def get_fields(self, request, obj=None):
        if may_read_secrets(request.user):
            return self.fields
        return [name if name != "target" else "masked_target" for name in self.fields]

    def get_readonly_fields(self, request, obj=None):
        return [] if may_read_secrets(request.user) else ["masked_target"]

    @admin.display(description="target")
    def masked_target(self, channel):
        return mask_channel_target(channel.kind, channel.target)


@admin.register(Notification)
class NotificationAdmin(ModelAdmin):
    """Read-only: the trigger writes notifications and the worker records their attempts."""

    list_display = ["id", "event", "channel", "status", "attempts", "next_attempt_at", "sent_at", "created_at"]
    list_filter = ["status", "channel__kind", "channel"]
    list_select_related = ["event__device", "channel"]  # an event's name is its device's
    search_fields = ["last_error", "event__rule_name", "event__message"]
    date_hierarchy = "created_at"
    actions = ["retry_now"]

    def has_change_permission(self, request, obj=None):
        # The form stays read-only; "retry now" is the only change (iothub.access: admins).
        return False

    def has_retry_permission(self, request):
        return request.user.has_perm("rules.change_notification")

    @admin.action(description="Retry the selected notifications now", permissions=["retry"])
    def retry_now(self, request, queryset):
        retried = services.notification_retry(notifications=queryset)
        self.message_user(request, f"{retried} notification(s) will be retried now; sent or sending ones were skipped.")
