-- The writer that last took a device's trip lock: with `version`, what tells a writer that its
-- memory of the device is still what the tables hold. A writer that remembers the device at the
-- version and writer the row holds takes the lock without changing the row (a row lock, no new
-- row version: a fraction of an update's cost on every device of every commit); any other takes
-- it by bumping the version and setting itself as the writer. The column is nullable: writers
-- of version 5 (and `processor trips rebuild`) bump the version and leave it as it was, which
-- is as safe, since a bumped version is one no writer remembers. See the trips writer's
-- `LOCK_REMEMBERED` (src/postgres/tables/trips/rows.rs).
ALTER TABLE trip_devices ADD COLUMN IF NOT EXISTS writer bigint;
