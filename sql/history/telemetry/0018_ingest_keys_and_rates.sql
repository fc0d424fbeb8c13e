-- Per-device ingest rates (telemetry/ingest/services.py): the requests each device sent in its current fixed
-- window, one row per device, counted and checked by the ingest statement itself. Shared by every web worker and
-- container, which a per-process counter is not. UNLOGGED: written on every ingest request, it is not worth WAL;
-- a crash empties it, which only forgives the windows in progress. The low fillfactor keeps each row's updates on
-- its page (HOT: the key never changes), so the table stays one row per device without vacuum falling behind.
-- Deleting a device deletes its row; an unknown device fails the foreign key, which the ingest statement relies on.
ALTER TABLE ingest_request_counts SET UNLOGGED;
ALTER TABLE ingest_request_counts SET (fillfactor = 50);
ALTER TABLE ingest_request_counts
    ADD CONSTRAINT ingest_request_counts_device_id_fkey
    FOREIGN KEY (device_id) REFERENCES devices (id) ON DELETE CASCADE;

COMMENT ON TABLE ingest_request_counts IS
    'Ingest requests per device in its current window (INGEST_DEVICE_RATE); written only by the ingest statement.';
