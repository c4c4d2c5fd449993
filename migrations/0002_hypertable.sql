-- TimescaleDB when the server has it: `positions` becomes a hypertable partitioned on ts.
-- On a server without the extension (or where it is installed but cannot be loaded, e.g. not in
-- shared_preload_libraries) the table stays a plain table with the same columns and key; the
-- service logs which one it runs on. `create_hypertable` is resolved only when this branch runs,
-- so the file is valid on both kinds of server.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
            PERFORM create_hypertable('positions', 'ts', if_not_exists => TRUE, migrate_data => TRUE);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'timescaledb is available but could not be used (%); positions stays a plain table', SQLERRM;
        END;
    END IF;
END
$$;
