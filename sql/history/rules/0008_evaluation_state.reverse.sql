-- Undoes 0008_evaluation_state.sql (the rule trigger of the previous migration computes the values itself).
DROP TRIGGER rules_refresh_evaluation_state ON public.rules;
DROP FUNCTION public.rules_refresh_evaluation_state();
DROP FUNCTION public.rule_evaluation_state_refresh();
DROP FUNCTION public.rules_auto_resolving();
DROP TABLE public.rule_evaluation_state;
