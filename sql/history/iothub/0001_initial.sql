-- Extensions every later migration relies on. Both are trusted: the database owner creates them, no superuser.
-- Reversing the migration leaves them in place (other objects of the database may depend on them).
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
