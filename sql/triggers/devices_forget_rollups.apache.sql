-- A deleted device's readings go by the foreign key's cascade; its rollups go here.
CREATE OR REPLACE FUNCTION telemetry_rollup.forget_devices()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM telemetry_rollup.store_1m s USING old_rows o WHERE s.device_id = o.id;
    DELETE FROM telemetry_rollup.store_1h s USING old_rows o WHERE s.device_id = o.id;
    DELETE FROM telemetry_rollup.store_1d s USING old_rows o WHERE s.device_id = o.id;
    DELETE FROM telemetry_rollup.invalidations i USING old_rows o WHERE i.device_id = o.id;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION telemetry_rollup.forget_devices() IS
    'Trigger devices_forget_rollups: deletes the rollups and pending invalidations of deleted devices.';

CREATE OR REPLACE TRIGGER devices_forget_rollups
AFTER DELETE ON public.devices
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION telemetry_rollup.forget_devices();
