-- Subscriptions: every statement that inserts events notifies the channel
-- of its schema, after its transaction commits, with the last position it
-- inserted, so that subscribers in any process or pool wake. The channel is
-- 'eventstore.' followed by the schema name, or by the md5 of a schema name
-- longer than 52 bytes (channel names have at most 63); postgres.channelName
-- computes the same.
CREATE FUNCTION ${schema}.notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head bigint;
BEGIN
    SELECT max(position) INTO head FROM inserted;
    IF head IS NOT NULL THEN
        PERFORM pg_notify(
            CASE WHEN octet_length(TG_TABLE_SCHEMA) <= 52
                THEN 'eventstore.' || TG_TABLE_SCHEMA
                ELSE 'eventstore.' || md5(TG_TABLE_SCHEMA)
            END,
            head::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify AFTER INSERT ON ${schema}.events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION ${schema}.notify_events();

-- Checkpoints: name -> position. numeric(20) holds any uint64.
CREATE TABLE ${schema}.checkpoints (
    name     text          NOT NULL,
    position numeric(20,0) NOT NULL,
    CONSTRAINT checkpoints_pkey PRIMARY KEY (name),
    CONSTRAINT checkpoints_position_check CHECK (position >= 0)
);
