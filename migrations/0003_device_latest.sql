-- The newest fix of every device: one row per device, written from the dataflow's per-epoch
-- fold in the same transaction as the epoch's positions. The upsert only moves a row forward
-- (ON CONFLICT ... DO UPDATE ... WHERE excluded.ts > device_latest.ts), so late data, a replay
-- or another replica never moves a device back. A plain table on purpose: it has one row per
-- device, is updated in place, and has no time to partition by.
CREATE TABLE IF NOT EXISTS device_latest (
    device_id   text             PRIMARY KEY,
    ts          timestamptz      NOT NULL,
    latitude    double precision NOT NULL,
    longitude   double precision NOT NULL,
    altitude    real,
    angle       real,
    speed       real,
    satellites  smallint,
    priority    smallint,
    event_id    integer,
    updated_at  timestamptz      NOT NULL DEFAULT now()
);
