-- TimescaleDB when the server has it: `positions` becomes a hypertable partitioned on ts.
-- On a server without the extension the table stays a plain table with the same columns and
-- key; the service logs which one it runs on. `create_hypertable` is resolved only when this
-- branch runs, so the file is valid on both kinds of server.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('positions', 'ts', if_not_exists => TRUE, migrate_data => TRUE);
    END IF;
END
$$;
