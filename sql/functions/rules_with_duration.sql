CREATE OR REPLACE FUNCTION public.rules_with_duration()
RETURNS boolean
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
    SELECT EXISTS (SELECT FROM public.rules WHERE enabled AND for_seconds IS NOT NULL)
$$;

COMMENT ON FUNCTION public.rules_with_duration() IS
    'Whether an enabled rule has a duration (for_seconds): the third value of rule_evaluation_state.';
