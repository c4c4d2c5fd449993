-- Device ids compare byte by byte (COLLATE "C") in every table keyed by them. The primary keys
-- lead with device_id, and each row inserted compares it a dozen times on its way down the
-- btree: under a linguistic collation (the database default, en_US.UTF-8 or even C.UTF-8 on
-- Debian) each comparison is a strcoll() call on NUL-terminated copies, under "C" a memcmp().
-- Device ids are IMEIs and other ASCII identifiers, for which the two orders agree; equality is
-- the same under both. See docs/performance.md (round 5).
--
-- On a table with rows this rebuilds the primary key under an exclusive lock (a few seconds per
-- million rows): run `processor migrate` when a pause in writing is acceptable. A hypertable
-- with compressed chunks cannot change a column's collation (TimescaleDB refuses it); it keeps
-- the default collation, correct and a little slower, and a NOTICE says so.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['positions', 'device_latest', 'trips', 'trip_runs', 'trip_devices'] LOOP
        IF EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
                    WHERE a.attrelid = to_regclass(t) AND a.attname = 'device_id'
                      AND c.collname <> 'C') THEN
            BEGIN
                EXECUTE format('ALTER TABLE %I ALTER COLUMN device_id TYPE text COLLATE "C"', t);
            EXCEPTION WHEN feature_not_supported THEN
                RAISE NOTICE 'device_id of % keeps its collation: %', t, SQLERRM;
            END;
        END IF;
    END LOOP;
END
$$;
