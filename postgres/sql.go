package postgres

// queries holds the store's SQL, with its schema name filled in.
type queries struct {
	lockHead    string // advance log_head by $1, returning the new last position
	byIDs       string // the events with the IDs $1
	version     string // the current version of aggregate $1
	insert      string // insert a batch of events, as arrays
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
const eventColumns = `id, position, aggregate_id, event_type, version, timestamp, payload, metadata`

func newQueries(schema string) queries {
	events := schema + ".events"
	return queries{
		lockHead: `UPDATE ` + schema + `.log_head SET position = position + $1 WHERE id RETURNING position`,
		byIDs:    `SELECT ` + eventColumns + ` FROM ` + events + ` WHERE id = ANY($1::uuid[])`,
		version:  `SELECT coalesce(max(version), 0) FROM ` + events + ` WHERE aggregate_id = $1`,
		insert: `INSERT INTO ` + events + ` (` + eventColumns + `)
			SELECT u.id, u.position, $3, u.event_type, u.version, u.timestamp, u.payload::json, u.metadata::jsonb
			FROM unnest($1::uuid[], $2::bigint[], $4::text[], $5::bigint[], $6::timestamptz[], $7::text[], $8::text[])
				AS u(id, position, event_type, version, timestamp, payload, metadata)`,
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
