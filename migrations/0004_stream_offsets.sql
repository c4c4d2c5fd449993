-- Where each consumer group may resume on its stream: a stream id at or below which everything
-- the group read is committed (its rows here, or its dead letter in Redis). Kept in PostgreSQL so
-- that a group that vanished from Redis (a restart without persistence, XGROUP DESTROY, an
-- eviction) is created again there instead of at the stream's beginning. Only ever moves forward;
-- delete the row to forget it.
CREATE TABLE IF NOT EXISTS stream_offsets (
    stream         text        NOT NULL,
    consumer_group text        NOT NULL,
    resume_ms      bigint      NOT NULL,
    resume_seq     bigint      NOT NULL,
    resume_id      text        GENERATED ALWAYS AS (resume_ms || '-' || resume_seq) STORED,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, consumer_group)
);
