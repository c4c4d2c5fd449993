-- One row per (device_id, ts): the wire contract's table. The primary key includes the time
-- column, as a TimescaleDB hypertable's unique index must, and is what makes writes idempotent
-- (INSERT ... ON CONFLICT (device_id, ts) DO NOTHING).
CREATE TABLE IF NOT EXISTS positions (
    device_id   text             NOT NULL,
    ts          timestamptz      NOT NULL,
    latitude    double precision NOT NULL,
    longitude   double precision NOT NULL,
    altitude    real,
    angle       real,
    speed       real,
    satellites  smallint,
    priority    smallint,
    event_id    integer,
    attributes  jsonb            NOT NULL DEFAULT '{}',
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, ts)
);
