-- Undoes 0013_no_data_rules.sql and the live definitions the migration applied, before its columns go.
DROP VIEW IF EXISTS public.rule_hidden_state;
DROP FUNCTION IF EXISTS public.rules_evaluate_no_data(timestamptz);
DROP FUNCTION IF EXISTS public.rules_end_silences(bigint[], uuid[], timestamptz[]);
DROP FUNCTION IF EXISTS public.rule_render_no_data_message(text, text, text, timestamptz, interval);
DROP FUNCTION IF EXISTS public.duration_text(interval);

-- rules_refresh_evaluation_state() as it was before.
CREATE OR REPLACE FUNCTION public.rules_refresh_evaluation_state()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM public.rule_evaluation_state_refresh();
    RETURN NULL;
END;
$$;

DROP FUNCTION IF EXISTS public.rules_with_no_data();
ALTER TABLE public.rule_evaluation_state DROP COLUMN no_data;
