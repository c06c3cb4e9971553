package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/follow"
	"github.com/eventstore-go/eventstore/storekit"
)

// sqliteStore is the SQLite baseline: the event store a competent engineer
// would write on SQLite in an afternoon, what a desktop developer would
// pick instead of this library. One file in WAL mode with
// synchronous=FULL (a commit is durable on return), one table keyed by
// (aggregate_id, version) (WITHOUT ROWID, so an aggregate's events lie
// together, as in bolt, and the version check reads the key), a unique
// position (the global log, max + 1 in the transaction), a unique event
// ID, indexes on (type, position) and (ts, position), and prepared
// statements. Appends validate with storekit.Prepare as every
// backend does, take the write lock (BEGIN IMMEDIATE) and check the
// version and, for the IDs the caller set, a retry, inside the
// transaction. Reads stream the rows of one query. Metadata is stored as
// JSON text, as most SQLite event stores keep it. It passes the library's
// conformance suite (TestSQLiteConformance).
type sqliteStore struct {
	path   string
	db     *sql.DB // readers, and the writer under mu
	mu     sync.Mutex
	closed atomic.Bool

	// signal wakes subscriptions after each commit (see Subscribe).
	signal *follow.Signal

	version, lastPosition, byID, insert    *sql.Stmt
	readAgg, readAll, readType, readTime   *sql.Stmt
	readAggTime, readTimeOpen, readAggOpen *sql.Stmt
}

// sqliteSchemaVersion is the version of the schema below; it keys the
// fixture cache.
const sqliteSchemaVersion = 2

const sqliteSchema = `
CREATE TABLE IF NOT EXISTS events (
	aggregate_id TEXT    NOT NULL,
	version      INTEGER NOT NULL,
	position     INTEGER NOT NULL,     -- the global log: 1, 2, 3, ...
	id           BLOB    NOT NULL,     -- the UUID's 16 bytes
	type         TEXT    NOT NULL,
	ts           INTEGER NOT NULL,     -- Unix microseconds
	payload      BLOB    NOT NULL,
	metadata     TEXT,                 -- JSON object, NULL when none
	PRIMARY KEY (aggregate_id, version)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS events_position ON events (position);
CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events (id);
CREATE INDEX IF NOT EXISTS events_type ON events (type, position);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts, position);
`

const sqliteColumns = `position, id, aggregate_id, version, type, ts, payload, metadata`

var errSQLiteClosed = fmt.Errorf("sqlite: %w", eventstore.ErrClosed)

// openSQLite opens (creating) the store in the file at path. noSync sets
// synchronous=OFF, for loading fixtures only.
func openSQLite(path string, noSync bool) (*sqliteStore, error) {
	sync := "FULL"
	if noSync {
		sync = "OFF"
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxIdleConns(4)
	if _, err := db.Exec(sqliteSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: create schema: %w", err)
	}
	s := &sqliteStore{path: path, db: db}
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&s.version, `SELECT coalesce(max(version), 0) FROM events WHERE aggregate_id = ?`},
		{&s.byID, `SELECT ` + sqliteColumns + ` FROM events WHERE id = ?`},
		{&s.lastPosition, `SELECT coalesce(max(position), 0) FROM events`},
		{&s.insert, `INSERT INTO events (position, id, aggregate_id, version, type, ts, payload, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`},
		{&s.readAgg, `SELECT ` + sqliteColumns + ` FROM events WHERE aggregate_id = ? AND version > ? ORDER BY version`},
		{&s.readAll, `SELECT ` + sqliteColumns + ` FROM events WHERE position > ? ORDER BY position`},
		{&s.readType, `SELECT ` + sqliteColumns + ` FROM events WHERE type = ? AND position > ? ORDER BY position`},
		{&s.readTime, `SELECT ` + sqliteColumns + ` FROM events WHERE ts >= ? AND ts < ? ORDER BY ts, position`},
		{&s.readTimeOpen, `SELECT ` + sqliteColumns + ` FROM events WHERE ts >= ? ORDER BY ts, position`},
		{&s.readAggTime, `SELECT ` + sqliteColumns + ` FROM events WHERE aggregate_id = ? AND ts >= ? AND ts < ? ORDER BY ts, position`},
		{&s.readAggOpen, `SELECT ` + sqliteColumns + ` FROM events WHERE aggregate_id = ? AND ts >= ? ORDER BY ts, position`},
	} {
		if *p.stmt, err = db.Prepare(p.sql); err != nil {
			db.Close()
			return nil, fmt.Errorf("sqlite: prepare %q: %w", p.sql, err)
		}
	}
	var head int64
	if err := s.lastPosition.QueryRow().Scan(&head); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: read the head: %w", err)
	}
	s.signal = follow.NewSignal(uint64(head))
	return s, nil
}

// Close closes the database; the last connection's close checkpoints the
// WAL into the main file.
func (s *sqliteStore) Close() error {
	s.signal.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	return s.db.Close()
}

// Append implements eventstore.Store's Append: all events in one
// transaction, the version checked and retries recognized inside it.
func (s *sqliteStore) Append(ctx context.Context, events ...eventstore.Event) ([]eventstore.Event, error) {
	if s.closed.Load() {
		return nil, errSQLiteClosed
	}
	prepared, err := storekit.Prepare(events, 0)
	if err != nil || len(prepared) == 0 {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil, errSQLiteClosed
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: begin: %w", err)
	}
	defer tx.Rollback()
	out, err := s.appendTx(ctx, tx, events, prepared)
	if err != nil || out == nil {
		return out, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: commit: %w", err)
	}
	s.signal.Publish(out[len(out)-1].Position)
	return out, nil
}

// Read implements eventstore.Store's Read the simple way, for the
// interface only: the log filtered by Filter.Match. The baseline keeps no
// tags, so a filter that asks for tags finds nothing; it is not
// benchmarked on queries, and TestSQLiteConformance skips their suites.
func (s *sqliteStore) Read(ctx context.Context, filter eventstore.Filter, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	return func(yield func(eventstore.Event, error) bool) {
		for e, err := range s.ReadAll(ctx, afterPosition) {
			if err != nil || filter.Match(e) {
				if !yield(e, err) || err != nil {
					return
				}
			}
		}
	}
}

// errNoAppendIf is the baseline's answer to AppendIf.
var errNoAppendIf = errors.New("sqlite baseline: AppendIf is not implemented")

// AppendIf implements eventstore.Store's AppendIf for the interface only:
// the baseline is not benchmarked on conditional appends, and refuses
// them.
func (s *sqliteStore) AppendIf(context.Context, eventstore.Condition, ...eventstore.Event) ([]eventstore.Event, error) {
	return nil, errNoAppendIf
}

// Head implements eventstore.Store's Head: the last position whose commit
// returned.
func (s *sqliteStore) Head(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.closed.Load() {
		return 0, errSQLiteClosed
	}
	return s.signal.Head(), nil
}

// Subscribe implements eventstore.Store's Subscribe the simple way: each
// time a commit wakes it, it reads the log after the last position it saw
// up to the head and yields what filter matches (the types are filtered by
// Filter.Match, not by the type index: the baseline is not benchmarked on
// subscriptions).
func (s *sqliteStore) Subscribe(ctx context.Context, afterPosition uint64, filter eventstore.Filter) iter.Seq2[eventstore.Event, error] {
	return follow.Seq(ctx, s.signal, afterPosition, func(after, head uint64, yield func(eventstore.Event, error) bool) (uint64, bool) {
		if head <= after {
			return after, true
		}
		for e, err := range s.ReadAll(ctx, after) {
			if err != nil {
				yield(eventstore.Event{}, err)
				return 0, false
			}
			if e.Position > head {
				break
			}
			if filter.Match(e) && !yield(e, nil) {
				return 0, false
			}
		}
		return head, true
	})
}

// appendTx appends one call's prepared events in tx. It returns the stored
// events of a retry with a nil error and no writes.
func (s *sqliteStore) appendTx(ctx context.Context, tx *sql.Tx, events, prepared []eventstore.Event) ([]eventstore.Event, error) {
	// A retry: IDs the caller set that are stored already.
	var stored []eventstore.Event
	var found []bool
	byID := tx.StmtContext(ctx, s.byID)
	for i, e := range events {
		if e.ID == "" {
			continue
		}
		id := uuid.MustParse(prepared[i].ID)
		ev, err := scanEvent(byID.QueryRowContext(ctx, id[:]))
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sqlite: look up ID: %w", err)
		}
		if stored == nil {
			stored, found = make([]eventstore.Event, len(prepared)), make([]bool, len(prepared))
		}
		stored[i], found[i] = ev, true
	}
	if stored != nil {
		if err := storekit.CheckRetry(events, stored, found); err != nil {
			return nil, err
		}
		return stored, nil
	}

	var current uint64
	if err := tx.StmtContext(ctx, s.version).QueryRowContext(ctx, prepared[0].AggregateID).Scan(&current); err != nil {
		return nil, fmt.Errorf("sqlite: read version: %w", err)
	}
	if err := storekit.AssignVersions(prepared, current); err != nil {
		return nil, err
	}
	var last int64
	if err := tx.StmtContext(ctx, s.lastPosition).QueryRowContext(ctx).Scan(&last); err != nil {
		return nil, fmt.Errorf("sqlite: read position: %w", err)
	}
	insert := tx.StmtContext(ctx, s.insert)
	for i := range prepared {
		e := &prepared[i]
		id := uuid.MustParse(e.ID)
		var meta any
		if e.Metadata != nil {
			m, err := json.Marshal(e.Metadata)
			if err != nil {
				return nil, fmt.Errorf("sqlite: encode metadata: %w", err)
			}
			meta = string(m)
		}
		e.Position = uint64(last) + 1 + uint64(i)
		_, err := insert.ExecContext(ctx, int64(e.Position), id[:], e.AggregateID, int64(e.Version), e.Type, e.Timestamp.UnixMicro(), []byte(e.Payload), meta)
		if err != nil {
			return nil, fmt.Errorf("sqlite: insert: %w", err)
		}
	}
	return prepared, nil
}

// load appends calls, many per transaction: the fixture loader, which the
// durable path would take an hour over.
func (s *sqliteStore) load(calls iter.Seq[[]eventstore.Event]) (err error) {
	ctx := background
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		// Publish the new head for Head and Subscribe.
		var head int64
		if err == nil {
			if err = s.lastPosition.QueryRow().Scan(&head); err == nil {
				s.signal.Publish(uint64(head))
			}
		}
	}()
	var tx *sql.Tx
	n := 0
	for events := range calls {
		if tx == nil {
			var err error
			if tx, err = s.db.BeginTx(ctx, nil); err != nil {
				return err
			}
		}
		prepared, err := storekit.Prepare(events, 0)
		if err != nil {
			tx.Rollback()
			return err
		}
		if _, err := s.appendTx(ctx, tx, events, prepared); err != nil {
			tx.Rollback()
			return err
		}
		if n += len(events); n >= 10_000 {
			if err := tx.Commit(); err != nil {
				return err
			}
			tx, n = nil, 0
		}
	}
	if tx != nil {
		return tx.Commit()
	}
	return nil
}

type rowScanner interface{ Scan(dest ...any) error }

// scanEvent decodes one row of sqliteColumns.
func scanEvent(r rowScanner) (eventstore.Event, error) {
	var (
		e        eventstore.Event
		id       []byte
		version  int64
		position int64
		ts       int64
		payload  []byte
		meta     sql.NullString
	)
	if err := r.Scan(&position, &id, &e.AggregateID, &version, &e.Type, &ts, &payload, &meta); err != nil {
		return e, err
	}
	e.Payload = payload
	u, err := uuid.FromBytes(id)
	if err != nil {
		return e, fmt.Errorf("sqlite: event ID: %w: %w", eventstore.ErrCorrupt, err)
	}
	e.ID = u.String()
	e.Version, e.Position = uint64(version), uint64(position)
	e.Timestamp = time.UnixMicro(ts).UTC()
	if meta.Valid {
		if err := json.Unmarshal([]byte(meta.String), &e.Metadata); err != nil {
			return e, fmt.Errorf("sqlite: metadata: %w: %w", eventstore.ErrCorrupt, err)
		}
	}
	return e, nil
}

// query yields the events of one prepared query's rows.
func (s *sqliteStore) query(ctx context.Context, stmt *sql.Stmt, args ...any) iter.Seq2[eventstore.Event, error] {
	return func(yield func(eventstore.Event, error) bool) {
		if s.closed.Load() {
			yield(eventstore.Event{}, errSQLiteClosed)
			return
		}
		rows, err := stmt.QueryContext(ctx, args...)
		if err != nil {
			yield(eventstore.Event{}, fmt.Errorf("sqlite: read: %w", err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			if err := ctx.Err(); err != nil {
				yield(eventstore.Event{}, err)
				return
			}
			e, err := scanEvent(rows)
			if err != nil {
				yield(eventstore.Event{}, err)
				return
			}
			if !yield(e, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(eventstore.Event{}, fmt.Errorf("sqlite: read: %w", err))
		}
	}
}

// ReadAggregate implements eventstore.Store's ReadAggregate.
func (s *sqliteStore) ReadAggregate(ctx context.Context, aggregateID string, afterVersion uint64) iter.Seq2[eventstore.Event, error] {
	return s.query(ctx, s.readAgg, aggregateID, int64(min(afterVersion, 1<<63-1)))
}

// ReadAll implements eventstore.Store's ReadAll.
func (s *sqliteStore) ReadAll(ctx context.Context, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	return s.query(ctx, s.readAll, int64(min(afterPosition, 1<<63-1)))
}

// ReadType implements eventstore.Store's ReadType.
func (s *sqliteStore) ReadType(ctx context.Context, eventType string, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	return s.query(ctx, s.readType, eventType, int64(min(afterPosition, 1<<63-1)))
}

// ReadTime implements eventstore.Store's ReadTime.
func (s *sqliteStore) ReadTime(ctx context.Context, aggregateID string, start, end time.Time) iter.Seq2[eventstore.Event, error] {
	lo := eventstore.NormalizeTime(start).UnixMicro()
	switch {
	case aggregateID == "" && end.IsZero():
		return s.query(ctx, s.readTimeOpen, lo)
	case aggregateID == "":
		return s.query(ctx, s.readTime, lo, eventstore.NormalizeTime(end).UnixMicro())
	case end.IsZero():
		return s.query(ctx, s.readAggOpen, aggregateID, lo)
	}
	return s.query(ctx, s.readAggTime, aggregateID, lo, eventstore.NormalizeTime(end).UnixMicro())
}

// sqliteSize returns the bytes of a closed store: its file, and its WAL if
// one is left.
func sqliteSize(path string) func() (int64, error) {
	return func() (int64, error) {
		fi, err := os.Stat(path)
		if err != nil {
			return 0, err
		}
		n := fi.Size()
		if wal, err := os.Stat(path + "-wal"); err == nil {
			n += wal.Size()
		}
		return n, nil
	}
}

// Version implements eventstore.Store's Version.
func (s *sqliteStore) Version(ctx context.Context, aggregateID string) (uint64, error) {
	if s.closed.Load() {
		return 0, errSQLiteClosed
	}
	var v uint64
	if err := s.version.QueryRowContext(ctx, aggregateID).Scan(&v); err != nil {
		return 0, fmt.Errorf("sqlite: read version: %w", err)
	}
	return v, nil
}
