-- rule_evaluation_state learns whether a no-data rule exists: then the rule trigger checks whether a reading ends
-- an open silence (one probe of rule_states_silent_device), otherwise it does nothing for them.
ALTER TABLE public.rule_evaluation_state ADD COLUMN no_data boolean NOT NULL DEFAULT false;
