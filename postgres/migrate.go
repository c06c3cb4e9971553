package postgres

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventstore-go/eventstore"
)

// The schema's migrations, applied in the order of their numbers. A file
// is never changed once released; a change to the schema is a new file.
// "${schema}" in a file stands for the quoted schema name.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("postgres: migration %s: name does not start with a number", base)
		}
		text, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: strings.TrimSuffix(base, ".sql"), sql: string(text)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("postgres: migration %s: want number %d", m.name, i+1)
		}
	}
	return out, nil
}

// lockKey is the advisory lock that serializes migrations of one schema.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("github.com/eventstore-go/eventstore/postgres migrate "))
	h.Write([]byte(schema))
	return int64(h.Sum64())
}

// migrate creates schema if needed (unless requireSchema) and applies the migrations it lacks, in
// one transaction under an advisory lock on the schema's name: processes
// opening the same schema together apply each migration once, and a failed
// migration leaves nothing behind. A schema migrated by a newer version of
// this package fails with eventstore.ErrUnknownFormat; a missing schema
// with requireSchema set fails with ErrSchemaNotFound.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema string, requireSchema bool) error {
	all, err := migrations()
	if err != nil {
		return err
	}
	q := pgx.Identifier{schema}.Sanitize()

	// The common case, a schema already migrated, takes no lock and needs
	// no privilege to create anything.
	var current int
	err = pool.QueryRow(ctx, `SELECT CASE WHEN to_regclass($1) IS NULL THEN -1 ELSE 0 END`, q+".schema_migrations").Scan(&current)
	if err != nil {
		return fmt.Errorf("postgres: look up schema %s: %w", q, err)
	}
	if current == 0 {
		if err := pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+q+".schema_migrations").Scan(&current); err != nil {
			return fmt.Errorf("postgres: read %s.schema_migrations: %w", q, err)
		}
		if current > len(all) {
			return fmt.Errorf("postgres: schema %s is at migration %d, this version knows %d: %w",
				q, current, len(all), eventstore.ErrUnknownFormat)
		}
		if current == len(all) {
			return nil
		}
	}

	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(schema)); err != nil {
			return fmt.Errorf("postgres: lock schema %s for migration: %w", q, err)
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
			return fmt.Errorf("postgres: look up schema %s: %w", q, err)
		}
		if !exists && requireSchema {
			return fmt.Errorf("postgres: schema %s does not exist and Options.RequireSchema is set: %w", q, ErrSchemaNotFound)
		}
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA "+q); err != nil {
				return fmt.Errorf("postgres: create schema %s: %w", q, err)
			}
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+q+`.schema_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("postgres: create %s.schema_migrations: %w", q, err)
		}
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+q+".schema_migrations").Scan(&current); err != nil {
			return fmt.Errorf("postgres: read %s.schema_migrations: %w", q, err)
		}
		if current > len(all) {
			return fmt.Errorf("postgres: schema %s is at migration %d, this version knows %d: %w",
				q, current, len(all), eventstore.ErrUnknownFormat)
		}
		for _, m := range all[current:] {
			if _, err := tx.Exec(ctx, strings.ReplaceAll(m.sql, "${schema}", q)); err != nil {
				return fmt.Errorf("postgres: migration %s on schema %s: %w", m.name, q, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+q+".schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
				return fmt.Errorf("postgres: record migration %s: %w", m.name, err)
			}
		}
		return nil
	})
}
