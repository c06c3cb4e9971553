package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
	"github.com/eventstore-go/eventstore/postgres"
)

// store is an opened STORE argument: the event store, and what the
// backend-specific commands need besides.
type store struct {
	eventstore.Store
	name string // as the user gave it

	bolt *bolt.Store     // the bolt store, or nil
	pg   *postgres.Store // the postgres store, or nil
	dsn  string          // postgres only
	pool *pgxpool.Pool   // postgres only: for the SQL of stats and verify, made on demand
}

// isPostgres reports whether a STORE argument names a PostgreSQL store.
func isPostgres(name string) bool {
	return strings.HasPrefix(name, "postgres://") || strings.HasPrefix(name, "postgresql://")
}

// openMode says how a command uses a store.
type openMode int

const (
	readOnly openMode = iota // bolt: read-only, shared lock; postgres: the schema must exist
	readWrite
)

// openStore opens the store a command line names.
func openStore(ctx context.Context, g *globals, name string, mode openMode) (*store, error) {
	if name == "" {
		return nil, usagef("empty STORE: give the path of a bolt file or a postgres:// URL")
	}
	if isPostgres(name) {
		cctx, cancel := context.WithTimeout(ctx, max(g.timeout, 10*time.Second))
		defer cancel()
		s, err := postgres.Open(cctx, name, &postgres.Options{Schema: g.schema, RequireSchema: mode == readOnly})
		if err != nil {
			if errors.Is(err, postgres.ErrSchemaNotFound) {
				return nil, fmt.Errorf("%s: schema %q does not exist (name another with --schema; nothing was created): %w", redact(name), g.schema, err)
			}
			return nil, fmt.Errorf("%s: %w", redact(name), err)
		}
		return &store{Store: s, name: redact(name), pg: s, dsn: name}, nil
	}
	opts := &bolt.Options{ReadOnly: mode == readOnly, Timeout: g.timeout}
	if mode == readOnly {
		if _, err := os.Stat(name); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s: no such file (a bolt store is a file path; PostgreSQL stores start with postgres://)", name)
			}
			return nil, err
		}
	}
	s, err := bolt.Open(name, opts)
	if err != nil {
		return nil, boltOpenError(name, mode, err)
	}
	return &store{Store: s, name: name, bolt: s}, nil
}

// boltOpenError says what went wrong opening a bolt file, and what to do.
func boltOpenError(name string, mode openMode, err error) error {
	switch {
	case errors.Is(err, eventstore.ErrLocked):
		how := "it open for writing"
		if mode == readWrite {
			how = "it open"
		}
		return &lockedError{name: name, how: how, err: err}
	case errors.Is(err, eventstore.ErrUnknownFormat):
		return fmt.Errorf("%s is not an event store (not a bolt file of this package, or an empty one): %w", name, err)
	case errors.Is(err, eventstore.ErrCorrupt):
		return fmt.Errorf("%s is damaged: %w\nrestore it from a backup; 'eventstore verify %s' lists what it can", name, err, name)
	}
	return err
}

// lockedError is a bolt file that another process holds. It prints as a
// short message with advice, not as the chain of errors.
type lockedError struct {
	name, how string
	err       error
}

func (e *lockedError) Error() string {
	return fmt.Sprintf(`%s is locked: another process (your application?) has %s.
A bolt file has one writer at a time, and readers wait for it. Either stop that
process and run this command again (or raise --timeout to wait for it), or have
the application write a copy with (*bolt.Store).Backup while it runs, and
inspect the copy.`, e.name, e.how)
}

func (e *lockedError) Unwrap() error { return e.err }

// Close closes the store and the pool, if one was made.
func (s *store) Close() error {
	if s.pool != nil {
		s.pool.Close()
	}
	return s.Store.Close()
}

// sql returns a pool on the store's PostgreSQL server, and the quoted
// schema name, for the SQL of stats, aggregates and verify.
func (s *store) sql(ctx context.Context) (*pgxpool.Pool, string, error) {
	if s.pool == nil {
		p, err := pgxpool.New(ctx, s.dsn)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", s.name, err)
		}
		s.pool = p
	}
	return s.pool, pgx.Identifier{s.pg.Schema()}.Sanitize(), nil
}

// redact hides the password of a URL, for messages.
func redact(dsn string) string {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil || cfg.Password == "" {
		return dsn
	}
	return strings.Replace(dsn, ":"+cfg.Password+"@", ":***@", 1)
}
