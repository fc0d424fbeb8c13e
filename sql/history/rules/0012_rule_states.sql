-- rule_states (the model rules.RuleState, created by this migration's CreateModel) starts with the unresolved events
-- of auto_resolve rules from before it: their pairs wait for the clearing reading. And rule_evaluation_state learns
-- whether an enabled rule has a duration: with auto_resolving, whether the rule trigger reads rule_states at all.

-- A pair's state goes with its rule or its device.
ALTER TABLE public.rule_states
    ADD CONSTRAINT rule_states_rule_id_fk FOREIGN KEY (rule_id) REFERENCES public.rules (id) ON DELETE CASCADE,
    ADD CONSTRAINT rule_states_device_id_fk FOREIGN KEY (device_id) REFERENCES public.devices (id) ON DELETE CASCADE;

ALTER TABLE public.rule_evaluation_state ADD COLUMN with_duration boolean NOT NULL DEFAULT false;

INSERT INTO public.rule_states (rule_id, device_id, changed_at, event_open)
SELECT e.rule_id, e.device_id, max(e.last_triggered_at), true
FROM public.events e
JOIN public.rules r ON r.id = e.rule_id AND r.auto_resolve
WHERE e.status IN ('open', 'acknowledged')
GROUP BY e.rule_id, e.device_id;
