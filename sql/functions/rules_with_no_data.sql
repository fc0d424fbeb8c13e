CREATE OR REPLACE FUNCTION public.rules_with_no_data()
RETURNS boolean
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
    -- Disabled ones count too: a reading still ends the open silences of a no-data rule disabled since.
    SELECT EXISTS (SELECT FROM public.rules WHERE kind = 'no_data')
$$;

COMMENT ON FUNCTION public.rules_with_no_data() IS
    'Whether a no-data rule exists (enabled or not): rule_evaluation_state.no_data, which tells the rule trigger '
    'whether a reading may end a silence.';
