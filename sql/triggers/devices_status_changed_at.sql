CREATE OR REPLACE FUNCTION public.devices_status_changed_at()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- No-data rules count a device's silence from when it last became active at the earliest.
    -- statement_timestamp(), like the column's default (Django's Now()).
    NEW.status_changed_at := statement_timestamp();
    RETURN NEW;
END;
$$;

-- Every writer (API, Admin, psql) that changes a device's status sets the time; an INSERT takes the column's
-- default, now(). Not a pgtrigger trigger: pgtrigger.ignore() must never skip it.
CREATE OR REPLACE TRIGGER devices_status_changed_at
BEFORE UPDATE OF status ON public.devices
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION public.devices_status_changed_at();
