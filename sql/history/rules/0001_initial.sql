-- Rules, events, notification channels and notifications. Django created the tables, CHECK constraints and
-- indexes; this file adds the foreign keys whose ON DELETE action Django cannot express, so a DELETE from psql
-- behaves like one from Django and the database removes dependent rows without Django loading them.
-- Not deferred: a dangling reference fails at once.

-- Deleting a device deletes its device-specific rules, its events (and through them their notifications).
ALTER TABLE public.rules
    ADD CONSTRAINT rules_device_id_fkey
    FOREIGN KEY (device_id) REFERENCES public.devices (id) ON DELETE CASCADE;

ALTER TABLE public.events
    ADD CONSTRAINT events_device_id_fkey
    FOREIGN KEY (device_id) REFERENCES public.devices (id) ON DELETE CASCADE;

-- A deleted rule leaves its events, which keep the rule's name in rule_name.
ALTER TABLE public.events
    ADD CONSTRAINT events_rule_id_fkey
    FOREIGN KEY (rule_id) REFERENCES public.rules (id) ON DELETE SET NULL;

ALTER TABLE public.rule_channels
    ADD CONSTRAINT rule_channels_rule_id_fkey
    FOREIGN KEY (rule_id) REFERENCES public.rules (id) ON DELETE CASCADE;

ALTER TABLE public.rule_channels
    ADD CONSTRAINT rule_channels_channel_id_fkey
    FOREIGN KEY (channel_id) REFERENCES public.notification_channels (id) ON DELETE CASCADE;

ALTER TABLE public.notifications
    ADD CONSTRAINT notifications_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES public.events (id) ON DELETE CASCADE;

ALTER TABLE public.notifications
    ADD CONSTRAINT notifications_channel_id_fkey
    FOREIGN KEY (channel_id) REFERENCES public.notification_channels (id) ON DELETE CASCADE;
