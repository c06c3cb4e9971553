-- The global log. One row per event; position orders the log, gapless and
-- in commit order, because every append takes it from log_head under that
-- row's lock.
CREATE TABLE ${schema}.events (
    id           uuid        NOT NULL,
    position     bigint      NOT NULL,
    aggregate_id text        NOT NULL,
    event_type   text        NOT NULL,
    version      bigint      NOT NULL,
    timestamp    timestamptz NOT NULL,
    payload      json        NOT NULL, -- json, not jsonb: the text is kept byte for byte
    metadata     jsonb,                -- NULL when the event has none
    CONSTRAINT events_pkey PRIMARY KEY (id),
    CONSTRAINT events_position_key UNIQUE (position),
    CONSTRAINT events_aggregate_version_key UNIQUE (aggregate_id, version),
    CONSTRAINT events_position_check CHECK (position > 0),
    CONSTRAINT events_version_check CHECK (version > 0)
);

-- ReadType: one type in position order.
CREATE INDEX events_event_type_idx ON ${schema}.events (event_type, position);
-- ReadTime over every aggregate: (timestamp, position) order.
CREATE INDEX events_timestamp_idx ON ${schema}.events (timestamp, position);
-- ReadTime over one aggregate.
CREATE INDEX events_aggregate_timestamp_idx ON ${schema}.events (aggregate_id, timestamp, position);

-- The single serialization point of appends: the last position handed out.
-- An append updates this row first and holds its lock until it commits.
CREATE TABLE ${schema}.log_head (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    position bigint  NOT NULL CHECK (position >= 0)
);
INSERT INTO ${schema}.log_head (id, position) VALUES (true, 0);
