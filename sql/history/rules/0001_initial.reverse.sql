-- Undoes 0001_initial.sql: drops the foreign keys it added (Django then drops the tables).
ALTER TABLE public.notifications DROP CONSTRAINT notifications_channel_id_fkey;
ALTER TABLE public.notifications DROP CONSTRAINT notifications_event_id_fkey;
ALTER TABLE public.rule_channels DROP CONSTRAINT rule_channels_channel_id_fkey;
ALTER TABLE public.rule_channels DROP CONSTRAINT rule_channels_rule_id_fkey;
ALTER TABLE public.events DROP CONSTRAINT events_rule_id_fkey;
ALTER TABLE public.events DROP CONSTRAINT events_device_id_fkey;
ALTER TABLE public.rules DROP CONSTRAINT rules_device_id_fkey;
