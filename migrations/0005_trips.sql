-- Trips derived from positions (TRIPS=on), changed in the same transaction as the positions that
-- change them. `trips` is what users read: the runs of moving fixes long enough to keep (see
-- docs/trips.md for the rules). `trip_runs` holds the runs too short to be trips: with both, every
-- run is stored, and the writer finds the runs around new fixes with index probes (a run's row is
-- exactly the state it resumes from), so a late fix costs the runs it touches, never the device's
-- history. Plain tables: a few rows per device per day, and kept longer than the positions they
-- come from (a retention policy on positions leaves them as they were). A device's current trip
-- is updated in place at every commit that extends it: the fillfactor leaves room on each page
-- for those updates to stay heap-only (no index entry per update).
CREATE TABLE IF NOT EXISTS trips (
    device_id       text             NOT NULL,
    start_ts        timestamptz      NOT NULL,
    end_ts          timestamptz      NOT NULL,
    start_latitude  double precision NOT NULL,
    start_longitude double precision NOT NULL,
    end_latitude    double precision NOT NULL,
    end_longitude   double precision NOT NULL,
    distance_m      double precision NOT NULL,
    max_speed       real             NOT NULL,
    fixes           integer          NOT NULL,
    open            boolean          NOT NULL,
    PRIMARY KEY (device_id, start_ts)
) WITH (fillfactor = 70);

CREATE TABLE IF NOT EXISTS trip_runs (
    device_id       text             NOT NULL,
    start_ts        timestamptz      NOT NULL,
    end_ts          timestamptz      NOT NULL,
    start_latitude  double precision NOT NULL,
    start_longitude double precision NOT NULL,
    end_latitude    double precision NOT NULL,
    end_longitude   double precision NOT NULL,
    distance_m      double precision NOT NULL,
    max_speed       real             NOT NULL,
    fixes           integer          NOT NULL,
    PRIMARY KEY (device_id, start_ts)
) WITH (fillfactor = 70);

-- One row per device with trips: the row its trip lock is taken on, so replicas that commit fixes
-- of the same device at once take turns (a row lock lives in the row, where an advisory lock per
-- device would fill the server's shared lock table). Taking the lock bumps `version`: a writer
-- that finds the version it last wrote plus one knows nobody else changed the device's trips
-- since, and may use what it remembers of them instead of reading them back.
CREATE TABLE IF NOT EXISTS trip_devices (
    device_id text   PRIMARY KEY,
    version   bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 70);
