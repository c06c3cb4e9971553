// Package postgres is an eventstore.Store kept in PostgreSQL, through pgx.
//
// It has the semantics of every other backend (it passes the conformance
// suite in storetest), so an application that outgrows its bolt file swaps
// bolt.Open for postgres.Open and changes nothing else.
//
//	s, err := postgres.Open(ctx, "postgres://app@db/app", nil)
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//
// # Schema
//
// Everything lives in one PostgreSQL schema, named by Options.Schema
// ("eventstore" by default), so that several stores can share a database.
// Open and New create the schema and its tables with the numbered SQL files
// in migrations/, once, under an advisory lock, so that processes starting
// together do not race; schema_migrations records what was applied. With
// Options.RequireSchema they refuse a schema that does not exist
// (ErrSchemaNotFound) instead of creating it: set it in production, where
// a deploy step creates the schema, so that a mistyped name fails at Open
// rather than opening an empty store. PostgreSQL's own schemas
// (information_schema, pg_*) are refused (ErrInvalidOptions).
//
//	events            one row per event
//	  id              uuid, primary key (events_pkey)
//	  position        bigint, unique (events_position_key): the global log order
//	  aggregate_id    text  } unique together (events_aggregate_version_key)
//	  version         bigint}
//	  event_type      text, indexed with position (ReadType)
//	  timestamp       timestamptz, indexed with position, alone and per aggregate (ReadTime)
//	  payload         json: the caller's bytes verbatim, queryable (payload->>'email')
//	  metadata        jsonb, NULL when the event has none
//	log_head          one row: the last position handed out
//	snapshots         the latest snapshot of each aggregate (SnapshotStore)
//	checkpoints       name -> position (CheckpointStore, and Project's progress)
//	events_notify     a trigger: every insert into events notifies the schema's channel (Subscribe)
//	schema_migrations the migrations applied
//
// # Positions
//
// An append locks the log_head row first and holds the lock until it
// commits, so appends commit one after another and take positions 1, 2, 3,
// ... in commit order with no gaps, as on bolt: a reader polling "position
// > last seen" never skips an event that commits late (a sequence would:
// its numbers are taken in one order and committed in another). Append
// sends BEGIN, the lock, one statement per append that checks and inserts,
// and COMMIT in one pipeline, so the lock is held for the time the server
// needs to run those statements and flush the commit, never across a
// network round trip. Commits are thus one at a time, even for different
// aggregates, and bounded by the server's commit latency (its WAL flush);
// concurrent appends of one Store share a commit (group commit) to win
// back throughput. Appends from several processes serialize on the lock.
//
// # Projections
//
// Project keeps a read model in the same database exactly once: it hands
// each selected event to a handler inside the transaction that also moves
// the projection's checkpoint (a row of checkpoints), so the read model
// and the checkpoint commit together. One runner per projection name
// runs at a time across every process on the schema: Project holds
// LockProjection(name), a session-level advisory lock on a connection of
// its own, and runs its transactions on that connection, so a runner that
// loses the lock cannot commit; the others wait as hot standbys and take
// over from the checkpoint the moment it is freed (at once when a runner
// dies). ResetProjection starts one over, unless it runs.
//
// # Errors
//
// Unique violations map by constraint name to eventstore.ErrDuplicateEvent
// or eventstore.ErrConflict; a connection lost while committing maps to
// eventstore.ErrUnknownOutcome, after which retrying the same Append is safe.
// An Append returns at most OutcomeWait after its ctx ends, whether it
// still waited for its group commit or was in flight; see Append for what
// it returns then.
// Other errors from the server are returned wrapped, with *pgconn.PgError
// available through errors.As.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventstore-go/eventstore"
)

var (
	_ eventstore.Store         = (*Store)(nil)
	_ eventstore.SnapshotStore = (*Store)(nil)
)

// DefaultSchema is the schema a Store uses when Options.Schema is empty.
const DefaultSchema = "eventstore"

// DefaultReadPageSize is how many events a read fetches per query when
// Options.ReadPageSize is zero.
const DefaultReadPageSize = 256

// readPageBytes caps the payload bytes a read holds in one page: a page of
// large payloads ends early, and the next pages ask for fewer rows.
const readPageBytes = 8 << 20

// Options configures a Store. A nil *Options means every default.
type Options struct {
	// Schema is the PostgreSQL schema holding the store's tables. Stores
	// with different schemas share a database without seeing each other.
	// It is created if missing, unless RequireSchema is set. Default:
	// DefaultSchema ("eventstore").
	//
	// PostgreSQL's own schemas are refused with an error matching
	// ErrInvalidOptions: information_schema and every name that starts
	// with "pg_" (pg_catalog, pg_toast, pg_temp, ...). The name is used as
	// is, quoted: "Events" and "events" are two schemas.
	Schema string

	// RequireSchema makes Open and New fail with an error matching
	// ErrSchemaNotFound when Schema does not exist, instead of creating
	// it, so that a mistyped name cannot open an empty store. Within an
	// existing schema they still create the store's tables and apply its
	// migrations. Default: false, the schema is created if missing.
	//
	// Use it in production: create the schema in a deploy step (CREATE
	// SCHEMA, with the grants the application needs, or one Open from the
	// deploy job without RequireSchema) and open it with RequireSchema in
	// the application. Leave it unset in tests and tools that make
	// throwaway schemas.
	RequireSchema bool

	// MaxPayloadSize is the largest payload Append accepts, in bytes. Zero
	// or less means eventstore.DefaultMaxPayloadSize (1 MiB).
	MaxPayloadSize int

	// ReadPageSize is how many events a read fetches per query. A read
	// holds at most one page in memory and no connection while the caller
	// handles its events. Default: DefaultReadPageSize (256).
	ReadPageSize int

	// PollInterval is how often a store with subscriptions reads the head
	// of the log, in case a notification is lost (while its listening
	// connection reconnects, say). Zero or less means DefaultPollInterval
	// (1s).
	PollInterval time.Duration
}

// withDefaults returns a copy of o with every zero field set to its default.
func (o *Options) withDefaults() (Options, error) {
	var out Options
	if o != nil {
		out = *o
	}
	if out.Schema == "" {
		out.Schema = DefaultSchema
	}
	if len(out.Schema) > 63 || !utf8.ValidString(out.Schema) || containsNUL(out.Schema) {
		return out, fmt.Errorf("%w: schema name %q: not 1 to 63 bytes of UTF-8 without NUL", ErrInvalidOptions, out.Schema)
	}
	if systemSchema(out.Schema) {
		return out, fmt.Errorf("%w: schema %q is reserved by PostgreSQL (information_schema, pg_*)", ErrInvalidOptions, out.Schema)
	}
	if out.MaxPayloadSize <= 0 {
		out.MaxPayloadSize = eventstore.DefaultMaxPayloadSize
	}
	if out.ReadPageSize <= 0 {
		out.ReadPageSize = DefaultReadPageSize
	}
	if out.PollInterval <= 0 {
		out.PollInterval = DefaultPollInterval
	}
	return out, nil
}

// Store is an event store in a PostgreSQL schema. It is safe for concurrent
// use, also by several processes sharing the schema.
type Store struct {
	pool    *pgxpool.Pool
	ownPool bool // Open made the pool, so Close closes it
	opts    Options
	closed  atomic.Bool
	close   sync.Once
	sql     queries

	// Group commit: see Append and submit.
	gmu        sync.Mutex
	queue      []*appendReq // appends waiting for the next pipeline
	committing bool         // a commitLoop goroutine runs

	live live // subscriptions: see Subscribe

	// Projection locks: see LockProjection. closeCtx ends when Close
	// begins; holds are the locks held through this Store, which Close
	// gives up before it returns.
	closeCtx    context.Context
	closeCancel context.CancelFunc
	hmu         sync.Mutex
	holds       map[*hold]struct{}
}

// Open connects to the PostgreSQL server at dsn (a URL or keyword/value
// string, as pgxpool.ParseConfig reads it, pool_max_conns and all),
// creates or migrates the store's schema and returns the store. The store
// owns its connection pool and closes it on Close.
//
// Its connections run with JIT compilation off: Open sends jit=off as a
// startup parameter, which outranks the server's own settings
// (postgresql.conf, ALTER ROLE or DATABASE ... SET jit), unless dsn sets
// jit itself, as a parameter or within options ("-c jit=on"). A connection
// pooler that refuses startup parameters it does not know (PgBouncer
// without jit in its ignore_startup_parameters) refuses that one: there,
// list it, or give New a pool of your own.
func Open(ctx context.Context, dsn string, opts *Options) (*Store, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse DSN: %w", err)
	}
	// A cancelled ctx asks the server to cancel the statement, so that an
	// append cancelled while it waits, for the log_head lock say, fails
	// cleanly (nothing stored) instead of dropping the connection with its
	// outcome unknown. The connection is dropped only if the server does not
	// answer the cancel within a few seconds.
	cfg.ConnConfig.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 5 * time.Second}
	}
	// The store's statements are short and use indexes; JIT compilation
	// only delays them, by far more than they take when the planner
	// misjudges a row count (see Import). A DSN that sets jit wins.
	if !setsJIT(cfg.ConnConfig.RuntimeParams) {
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s, err := newStore(ctx, pool, o)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.ownPool = true
	return s, nil
}

// setsJIT reports whether the runtime parameters of a DSN set jit: as a
// parameter of its own (the server ignores the case of a setting's name)
// or within options.
func setsJIT(params map[string]string) bool {
	for k, v := range params {
		if strings.EqualFold(k, "jit") || strings.EqualFold(k, "options") && strings.Contains(strings.ToLower(v), "jit") {
			return true
		}
	}
	return false
}

// New returns a store that uses pool, which the caller owns: Close does not
// close it. It creates or migrates the store's schema first.
//
// pgx's default makes a cancelled ctx drop the connection, which gives an
// append cancelled while it waits an unknown outcome. Open configures its
// pool to send the server a cancel request instead; a caller's pool can do
// the same with pgconn.CancelRequestContextWatcherHandler. Open also turns
// JIT compilation off, which can cost a statement of this store a hundred
// times its run time; a caller's pool can set the jit runtime parameter
// to off (Import turns it off for its own transactions in any pool).
func New(ctx context.Context, pool *pgxpool.Pool, opts *Options) (*Store, error) {
	if pool == nil {
		return nil, errors.New("postgres: New with a nil pool")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return newStore(ctx, pool, o)
}

func newStore(ctx context.Context, pool *pgxpool.Pool, o Options) (*Store, error) {
	if err := migrate(ctx, pool, o.Schema, o.RequireSchema); err != nil {
		return nil, err
	}
	closeCtx, closeCancel := context.WithCancel(context.Background())
	return &Store{
		pool:        pool,
		opts:        o,
		sql:         newQueries(pgx.Identifier{o.Schema}.Sanitize()),
		closeCtx:    closeCtx,
		closeCancel: closeCancel,
		holds:       make(map[*hold]struct{}),
	}, nil
}

// Schema returns the PostgreSQL schema holding the store's tables.
func (s *Store) Schema() string { return s.opts.Schema }

// Close ends every subscription, gives up every projection lock held
// through the store (ending Project runs with ErrClosed), releases the
// store and, if Open made it, its connection pool. Calls
// after Close fail with eventstore.ErrClosed; closing again returns nil.
// Close waits for queries in flight to return their connections, and for
// the lock connections to close.
func (s *Store) Close() error {
	s.close.Do(func() {
		s.closed.Store(true)
		s.closeCancel()
		s.releaseHolds()
		s.stopLive()
		if s.ownPool {
			s.pool.Close()
		}
	})
	return nil
}

// systemSchema reports whether PostgreSQL reserves schema for itself:
// information_schema, and every name starting with "pg_" (pg_catalog,
// pg_toast, pg_temp and the per-session pg_temp_N and pg_toast_temp_N).
// The server compares names as they are, so "PG_x" is an ordinary schema.
func systemSchema(schema string) bool {
	return schema == "information_schema" || strings.HasPrefix(schema, "pg_")
}

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// validName reports whether s can be an AggregateID or Type at all. Reads
// of a name no store accepts find nothing and send no query: PostgreSQL
// text refuses NUL bytes and invalid UTF-8.
func validName(s string) bool {
	return s != "" && len(s) <= eventstore.MaxNameLength && utf8.ValidString(s) && !containsNUL(s)
}
