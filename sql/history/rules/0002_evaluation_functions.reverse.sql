-- Undoes 0002_evaluation_functions.sql.
DROP FUNCTION public.rules_prefilter();
DROP FUNCTION public.rule_render_message(text, text, text, jsonb, text, jsonb);
DROP FUNCTION public.rule_matches(text, jsonb, jsonb);
