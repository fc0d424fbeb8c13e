CREATE OR REPLACE FUNCTION public.metrics_declared(metrics jsonb, declared jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    -- Every top-level key of a reading's metrics is the name of a declared metric (device_types.metrics, an array
    -- of {"name", "unit", "description"} objects). Ingest calls it only for the devices of a type with
    -- strict_metrics; the trigger rules_metric_declared for a rule's metric.
    SELECT NOT EXISTS (
        SELECT FROM jsonb_object_keys(metrics) k
        WHERE NOT EXISTS (SELECT FROM jsonb_array_elements(declared) d WHERE d ->> 'name' = k)
    )
$$;

COMMENT ON FUNCTION public.metrics_declared(jsonb, jsonb) IS
    'Whether every metric of a reading is declared by its device type (device_types.metrics): ingest refuses the '
    'readings of devices whose type has strict_metrics when it is false.';
