-- The telemetry hypertable. Django created the table (columns, composite primary key (device_id, time), the
-- CHECK that metrics is an object); this file adds what Django cannot express.

-- Deleting a device deletes its readings here, in one statement, without Django loading them. Not deferred:
-- a reading of an unknown device fails at once.
ALTER TABLE telemetry
    ADD CONSTRAINT telemetry_device_id_fkey
    FOREIGN KEY (device_id) REFERENCES devices (id) ON DELETE CASCADE;

-- 1-day chunks on time. No default time index: the primary key (device_id, time) serves every query we make
-- (per device, by time range), and each extra index costs every insert.
SELECT public.create_hypertable(
    'public.telemetry',
    public.by_range('time', INTERVAL '1 day'),
    create_default_indexes => false
);
