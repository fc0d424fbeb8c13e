CREATE OR REPLACE FUNCTION public.rules_metric_declared()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    type_name text;
    declared jsonb;
BEGIN
    -- The type of the rule's target: the device type it names, or the type of the device it names.
    SELECT t.name, t.metrics INTO type_name, declared
    FROM public.device_types t
    WHERE t.id = coalesce(
        NEW.device_type_id, (SELECT d.device_type_id FROM public.devices d WHERE d.id = NEW.device_id)
    );
    IF FOUND AND NOT public.metrics_declared(jsonb_build_object(NEW.metric, true), declared) THEN
        RAISE EXCEPTION 'The device type % declares no metric %.', type_name, quote_literal(NEW.metric)
            USING ERRCODE = 'IO004',
                HINT = 'A rule for a device or a device type names a metric its type declares: declare it on the '
                    'type first, or target every device.';
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION public.rules_metric_declared() IS
    'Refuses a rule for a device or a device type whose metric the type does not declare (SQLSTATE IO004).';

-- Whoever writes the rule: the API and Admin check it first with a message of their own (rules.models.Rule.clean),
-- a DBA's INSERT meets this. Rules for every device may name any metric, and a no-data rule may name none. A metric
-- later removed from the type leaves its rules as they are until one of these columns is written again.
-- Not a pgtrigger trigger: pgtrigger.ignore() must never switch it off.
CREATE OR REPLACE TRIGGER rules_metric_declared
BEFORE INSERT OR UPDATE OF metric, device_id, device_type_id ON public.rules
FOR EACH ROW
WHEN (NEW.metric IS NOT NULL AND (NEW.device_id IS NOT NULL OR NEW.device_type_id IS NOT NULL))
EXECUTE FUNCTION public.rules_metric_declared();
