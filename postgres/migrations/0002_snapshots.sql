-- The latest snapshot of each aggregate. version is numeric(20) because a
-- snapshot version is any uint64.
CREATE TABLE ${schema}.snapshots (
    aggregate_id text          NOT NULL,
    version      numeric(20,0) NOT NULL,
    schema       text          NOT NULL,
    state        bytea         NOT NULL,
    timestamp    timestamptz   NOT NULL,
    CONSTRAINT snapshots_pkey PRIMARY KEY (aggregate_id),
    CONSTRAINT snapshots_version_check CHECK (version > 0)
);
