CREATE OR REPLACE FUNCTION public.users_keep_an_active_admin()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- Transactions that take an admin away go one at a time: without this, two admins demoting each other at the
    -- same moment would each still see the other (uncommitted) and both succeed. The lock is held until commit;
    -- in READ COMMITTED the next statement takes a new snapshot (this function is VOLATILE), so it sees what the
    -- transaction that held the lock before committed. Row locks on the admins instead would deadlock: each
    -- transaction already holds the row it changes.
    PERFORM pg_advisory_xact_lock(hashtext('iothub'), hashtext('users_keep_an_active_admin'));
    IF NOT EXISTS (SELECT FROM public.users WHERE role = 'admin' AND is_active) THEN
        RAISE EXCEPTION '% is the last active admin.', OLD.username
            USING ERRCODE = 'IO002',
                HINT = 'IoT Hub keeps at least one active admin: make another user an active admin first.';
    END IF;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION public.users_keep_an_active_admin() IS
    'Refuses a change that leaves no active admin (SQLSTATE IO002), one such transaction at a time.';

-- AFTER, so a statement that changes several users is checked once its changes are all visible. Only a change that
-- takes an admin away takes the lock: logins (last_login) and edits of other users never wait for it.
-- Not a pgtrigger trigger: pgtrigger.ignore() must never switch it off.
CREATE OR REPLACE TRIGGER users_keep_an_active_admin_on_update
AFTER UPDATE OF role, is_active ON public.users
FOR EACH ROW
WHEN (OLD.role = 'admin' AND OLD.is_active AND NOT (NEW.role = 'admin' AND NEW.is_active))
EXECUTE FUNCTION public.users_keep_an_active_admin();

CREATE OR REPLACE TRIGGER users_keep_an_active_admin_on_delete
AFTER DELETE ON public.users
FOR EACH ROW
WHEN (OLD.role = 'admin' AND OLD.is_active)
EXECUTE FUNCTION public.users_keep_an_active_admin();
