"""Django Admin of the rules app: rules (validated like the API), events (read-only, acknowledge/resolve actions
with a note), notification channels (editable, target checked per kind) and notifications (read-only, a retry
action). Who may do what is iothub.access's table, through User.has_perm."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import ValidationError

from iothub.access import may_read_secrets
from rules import services
from rules.forms import NO_DATA_ROWS, THRESHOLD_ROWS, RuleAdminForm
from rules.models import Event, EventStatus, Notification, NotificationChannel, Rule, RuleChannel, RuleKind
from rules.notifications import clean_channel_target, mask_channel_target


class RuleChannelInline(admin.TabularInline):
    model = RuleChannel
    extra = 1
    verbose_name = "notification channel"
    verbose_name_plural = "notification channels (a pending notification per enabled channel for each new event)"

    def get_queryset(self, request):
        # Each row is labelled with its channel (RuleChannel.__str__).
        return super().get_queryset(request).select_related("channel")


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    # Rule.clean() gives the form the same messages as the API (threshold vs operator, targets, placeholders).
    form = RuleAdminForm
    change_form_template = "admin/rules/rule/change_form.html"
    list_display = [
        "name",
        "kind",
        "target",
        "condition",
        "severity",
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

    def get_fieldsets(self, request, obj=None):
        # An add page has no history yet (its created_at would show the database default's Python object).
        fieldsets = super().get_fieldsets(request, obj)
        return fieldsets if obj is not None else [fieldset for fieldset in fieldsets if fieldset[0] != "History"]

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


class EventActionForm(ActionForm):
    # The API's acknowledge/ and resolve/ take the same note.
    note = forms.CharField(
        required=False,
        max_length=2000,
        label="Note",
        widget=forms.TextInput(attrs={"size": 40, "placeholder": "a note for acknowledge/resolve (optional)"}),
    )


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """Events are written by the database; here they are read, acknowledged and resolved (never added or deleted:
    iothub.access gives no role those permissions)."""

    list_display = [
        "triggered_at",
        "severity",
        "status",
        "rule_name",
        "device",
        "message",
        "occurrence_count",
        "last_triggered_at",
    ]
    list_filter = ["status", "severity", "triggered_at", "rule"]
    search_fields = ["rule_name", "message", "device__name", "device__serial_number"]
    list_select_related = ["device"]
    date_hierarchy = "triggered_at"
    actions = ["acknowledge", "resolve"]
    action_form = EventActionForm

    def has_change_permission(self, request, obj=None):
        # The form stays read-only: acknowledge and resolve are the only changes, through the actions.
        return False

    def has_transition_permission(self, request):
        return request.user.has_perm("rules.change_event")

    @admin.action(description="Acknowledge selected open events (with the note)", permissions=["transition"])
    def acknowledge(self, request, queryset):
        self._transition(request, queryset, services.event_acknowledge, "acknowledged")

    @admin.action(description="Resolve selected events (with the note)", permissions=["transition"])
    def resolve(self, request, queryset):
        self._transition(request, queryset, services.event_resolve, "resolved")

    def _transition(self, request, queryset, transition, done):
        # The action form checked the note (at most 2000 characters) before the action ran.
        note = request.POST.get("note", "").strip()
        changed, refused = 0, []
        for event in queryset:
            try:
                transition(event=event, user=request.user, note=note)
                changed += 1
            except services.InvalidEventTransition:
                refused.append(event)
        if changed:
            self.message_user(request, f"{changed} event(s) {done}.", messages.SUCCESS)
        if refused:
            statuses = ", ".join(sorted({event.status for event in refused}))
            self.message_user(
                request,
                f"{len(refused)} event(s) not {done}: their status ({statuses}) doesn't allow it "
                f"(open → {EventStatus.ACKNOWLEDGED} → {EventStatus.RESOLVED}).",
                messages.WARNING,
            )


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
class NotificationChannelAdmin(admin.ModelAdmin):
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
class NotificationAdmin(admin.ModelAdmin):
    """Read-only: the trigger writes notifications and the worker records their attempts."""

    list_display = ["id", "event", "channel", "status", "attempts", "next_attempt_at", "sent_at", "created_at"]
    list_filter = ["status", "channel__kind", "channel"]
    list_select_related = ["event", "channel"]
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
