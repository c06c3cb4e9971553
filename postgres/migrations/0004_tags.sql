-- Tags (eventstore.Event.Tags): NULL when the event has none. The GIN
-- index serves Read, Subscribe and the condition of AppendIf, which select
-- events carrying all of some tags with "tags @> ARRAY[...]".
ALTER TABLE ${schema}.events ADD COLUMN tags text[];
CREATE INDEX events_tags_idx ON ${schema}.events USING gin (tags);
