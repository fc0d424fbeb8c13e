CREATE OR REPLACE FUNCTION public.rules_auto_resolving()
RETURNS boolean
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
    SELECT EXISTS (SELECT FROM public.rules WHERE enabled AND auto_resolve)
$$;

COMMENT ON FUNCTION public.rules_auto_resolving() IS
    'Whether an enabled rule has auto_resolve: the second value of rule_evaluation_state.';
