-- Trips derived from positions (TRIPS=on), changed in the same transaction as the positions that
-- change them. `trips` is what users read: the runs of moving fixes long enough to keep (see
-- docs/trips.md for the rules). `trip_runs` holds every run, short ones too: the writer finds the
-- runs around new fixes there with two index probes (a run is exactly the state it resumes from),
-- so a late fix costs the runs it touches, never the device's history. Plain tables: a few rows
-- per device per day, updated in place, and kept longer than the positions they come from (a
-- retention policy on positions leaves them as they were).
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
);

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
);
