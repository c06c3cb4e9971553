package postgres

// queries holds the store's SQL, with its schema name filled in.
type queries struct {
	lockHead    string // lock log_head: the serialization point of appends
	byIDs       string // the events with the IDs $1
	version     string // the current version of aggregate $1
	append      string // check and insert a batch of events; see newQueries
	readAgg     string // aggregate $1 after version $2, limit $3
	readAll     string // after position $1, limit $2
	readType    string // type $1 after position $2, limit $3
	readTimeAll string // after (timestamp, position) ($1, $2), before timestamp $3 (may be infinity), limit $4
	readTimeAgg string // the same within aggregate $5
	saveSnap    string
	loadSnap    string
	deleteSnap  string
}

// eventColumns are the columns scanEvent reads, in its order.
const eventColumns = `id, position, aggregate_id, event_type, version, timestamp, payload, metadata, tags`

// tagsFromJSON turns the JSON array text u.tags (NULL for no tags) into
// the text[] of the tags column, in order.
var tagsFromJSON = tagsFrom("u")

// tagsFrom is tagsFromJSON of the row alias.tags.
func tagsFrom(alias string) string {
	return `CASE WHEN ` + alias + `.tags IS NULL THEN NULL ELSE ARRAY(
	SELECT x.t FROM jsonb_array_elements_text(` + alias + `.tags::jsonb) WITH ORDINALITY AS x(t, i) ORDER BY x.i) END`
}

func newQueries(schema string) queries {
	events := schema + ".events"
	return queries{
		lockHead: `SELECT position FROM ` + schema + `.log_head WHERE id FOR UPDATE`,
		byIDs:    `SELECT ` + eventColumns + ` FROM ` + events + ` WHERE id = ANY($1::uuid[])`,
		version:  `SELECT coalesce(max(version), 0) FROM ` + events + ` WHERE aggregate_id = $1`,

		// append runs after lockHead, in the same transaction, so its
		// snapshot holds every append committed before this one. It returns
		// the aggregate's version, how many of the IDs $1 are stored, and
		// the last position; and when no ID is stored and the first version
		// $7 is 0 (any) or the aggregate's version + 1, it inserts the
		// events of aggregate $2 at the next versions and positions and
		// advances log_head by $8, the number of events. $9 holds each
		// event's tags as a JSON array, or NULL.
		append: `WITH cur AS (
				SELECT coalesce(max(version), 0) AS version FROM ` + events + ` WHERE aggregate_id = $2
			), dup AS (
				SELECT count(*) AS n FROM ` + events + ` WHERE id = ANY($1::uuid[])
			), head AS (
				SELECT position FROM ` + schema + `.log_head WHERE id
			), ok AS (
				SELECT cur.version, head.position FROM cur, dup, head
				WHERE dup.n = 0 AND ($7::bigint = 0 OR $7::bigint = cur.version + 1)
			), ins AS (
				INSERT INTO ` + events + ` (` + eventColumns + `)
				SELECT u.id, ok.position + u.n, $2, u.event_type, ok.version + u.n, u.timestamp, u.payload::json, u.metadata::jsonb,
					` + tagsFromJSON + `
				FROM ok, unnest($1::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $9::text[])
					WITH ORDINALITY AS u(id, event_type, timestamp, payload, metadata, tags, n)
			), upd AS (
				UPDATE ` + schema + `.log_head AS h SET position = h.position + $8::bigint FROM ok WHERE h.id
			)
			SELECT cur.version, dup.n, head.position FROM cur, dup, head`,
		readAgg: `SELECT ` + eventColumns + ` FROM ` + events + `
			WHERE aggregate_id = $1 AND version > $2 ORDER BY version LIMIT $3`,
		readAll: `SELECT ` + eventColumns + ` FROM ` + events + `
			WHERE position > $1 ORDER BY position LIMIT $2`,
		readType: `SELECT ` + eventColumns + ` FROM ` + events + `
			WHERE event_type = $1 AND position > $2 ORDER BY position LIMIT $3`,
		readTimeAll: `SELECT ` + eventColumns + ` FROM ` + events + `
			WHERE (timestamp, position) > ($1, $2) AND timestamp < $3
			ORDER BY timestamp, position LIMIT $4`,
		readTimeAgg: `SELECT ` + eventColumns + ` FROM ` + events + `
			WHERE aggregate_id = $5 AND (timestamp, position) > ($1, $2) AND timestamp < $3
			ORDER BY timestamp, position LIMIT $4`,
		saveSnap: `INSERT INTO ` + schema + `.snapshots AS s (aggregate_id, version, schema, state, timestamp)
			VALUES ($1, $2::numeric, $3, $4, $5)
			ON CONFLICT (aggregate_id) DO UPDATE
				SET version = excluded.version, schema = excluded.schema, state = excluded.state, timestamp = excluded.timestamp
				WHERE excluded.version >= s.version`,
		loadSnap:   `SELECT version::text, schema, state, timestamp FROM ` + schema + `.snapshots WHERE aggregate_id = $1`,
		deleteSnap: `DELETE FROM ` + schema + `.snapshots WHERE aggregate_id = $1`,
	}
}
