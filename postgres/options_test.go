package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/pgtest"
	"github.com/eventstore-go/eventstore/postgres"
)

// unreachableDSN names a server that does not exist: an Open that got as
// far as connecting would fail with a connection error instead of the one
// a test expects.
const unreachableDSN = "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"

// schemaExists reports whether the server has the schema.
func schemaExists(t *testing.T, schema string) bool {
	t.Helper()
	var exists bool
	require.NoError(t, pgtest.Admin(t).QueryRow(context.Background(),
		"SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists))
	return exists
}

// storeTables returns the store's tables found in schema.
func storeTables(t *testing.T, schema string) []string {
	t.Helper()
	rows, err := pgtest.Admin(t).Query(context.Background(), `SELECT tablename FROM pg_tables
		WHERE schemaname = $1 AND tablename IN ('events', 'log_head', 'snapshots', 'schema_migrations')`, schema)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return tables
}

// PostgreSQL's own schemas are refused before any connection, with an
// error that matches ErrInvalidOptions and names the schema, and nothing
// is created in them.
func TestOpen_SystemSchemaRefused(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Admin(t)
	for _, schema := range []string{
		"information_schema", "pg_catalog", "pg_toast", "pg_temp", "pg_temp_1", "pg_toast_temp_1", "pg_", "pg_events",
	} {
		t.Run(schema, func(t *testing.T) {
			t.Cleanup(func() {
				// Only if a broken Open created the store's tables there.
				for _, table := range storeTables(t, schema) {
					_, err := pool.Exec(ctx, "DROP TABLE "+pgx.Identifier{schema, table}.Sanitize()+" CASCADE")
					require.NoError(t, err)
				}
			})
			_, err := postgres.New(ctx, pool, &postgres.Options{Schema: schema})
			require.ErrorIs(t, err, postgres.ErrInvalidOptions)
			require.Empty(t, storeTables(t, schema), "New created tables in %s", schema)

			_, err = postgres.Open(ctx, unreachableDSN, &postgres.Options{Schema: schema})
			require.ErrorIs(t, err, postgres.ErrInvalidOptions, "refused before connecting")
			require.ErrorContains(t, err, `"`+schema+`"`)
		})
	}
}

// Names that only look like system schemas, and names that need quoting,
// are ordinary schemas.
func TestOpen_OddSchemaNames(t *testing.T) {
	ctx := context.Background()
	suffix := strings.TrimPrefix(pgtest.FreshSchema(t), "estest_")
	for _, schema := range []string{
		"PG_" + suffix,                                // the reserved prefix is lower case
		"Information_Schema_" + suffix,                // not information_schema
		`odd "name"; DROP SCHEMA public -- ` + suffix, // quoted, not interpreted
		"schéma " + suffix,
	} {
		t.Run(schema, func(t *testing.T) {
			t.Cleanup(func() {
				_, err := pgtest.Admin(t).Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
				require.NoError(t, err)
			})
			s, err := postgres.Open(ctx, pgtest.DSN(), &postgres.Options{Schema: schema})
			require.NoError(t, err)
			defer s.Close()
			_, err = s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`)})
			require.NoError(t, err)
			got, err := eventstore.Collect(s.ReadAll(ctx, 0))
			require.NoError(t, err)
			require.Len(t, got, 1)
			require.True(t, schemaExists(t, schema))
			require.Len(t, storeTables(t, schema), 4)
		})
	}
	require.True(t, schemaExists(t, "public"))
}

// A schema name that PostgreSQL cannot hold is refused before connecting.
func TestOpen_BadSchemaName(t *testing.T) {
	for _, schema := range []string{strings.Repeat("s", 64), "a\x00b", "\xff"} {
		_, err := postgres.Open(context.Background(), unreachableDSN, &postgres.Options{Schema: schema})
		require.ErrorIs(t, err, postgres.ErrInvalidOptions, "%q", schema)
	}
}

// With RequireSchema a missing schema fails to open, naming the schema,
// and nothing is created; once the schema exists the store opens in it and
// creates its tables. Without it a missing schema is created.
func TestOpen_RequireSchema(t *testing.T) {
	ctx := context.Background()
	schema := pgtest.FreshSchema(t)
	_, err := postgres.Open(ctx, pgtest.DSN(), &postgres.Options{Schema: schema, RequireSchema: true})
	require.ErrorIs(t, err, postgres.ErrSchemaNotFound)
	require.ErrorContains(t, err, `"`+schema+`"`)
	_, err = postgres.New(ctx, pgtest.Admin(t), &postgres.Options{Schema: schema, RequireSchema: true})
	require.ErrorIs(t, err, postgres.ErrSchemaNotFound)
	require.False(t, schemaExists(t, schema), "a required schema was created")

	// The deploy step creates the schema; the application opens it.
	_, err = pgtest.Admin(t).Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize())
	require.NoError(t, err)
	s, err := postgres.Open(ctx, pgtest.DSN(), &postgres.Options{Schema: schema, RequireSchema: true})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`)})
	require.NoError(t, err)
	again, err := postgres.New(ctx, pgtest.Admin(t), &postgres.Options{Schema: schema, RequireSchema: true})
	require.NoError(t, err, "a migrated schema opens again")
	v, err := again.Version(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, uint64(1), v)

	// The default creates a missing schema.
	other := pgtest.FreshSchema(t)
	created, err := postgres.Open(ctx, pgtest.DSN(), &postgres.Options{Schema: other})
	require.NoError(t, err)
	defer created.Close()
	require.True(t, schemaExists(t, other))
}

// TestOpen_JITOff checks that Open's connections run with JIT off, which
// made Import's insert take 20 times as long (compiling a plan the planner
// misjudged), unless the DSN sets jit itself, in any case or in options.
func TestOpen_JITOff(t *testing.T) {
	ctx := context.Background()
	pgtest.Admin(t)
	// Each case's parameter as a keyword/value DSN and as a URL has it.
	for _, tc := range []struct{ kv, url, want string }{
		{"", "", "off"},
		{"jit=on", "jit=on", "on"},
		{"JIT=on", "JIT=on", "on"}, // the server ignores the case of a name
		{"options='-c jit=on'", "options=-c%20jit%3Don", "on"},
	} {
		dsn := pgtest.DSN()
		if tc.kv != "" {
			switch {
			case !strings.Contains(dsn, "://"):
				dsn += " " + tc.kv
			case strings.Contains(dsn, "?"):
				dsn += "&" + tc.url
			default:
				dsn += "?" + tc.url
			}
		}
		s, err := postgres.Open(ctx, dsn, &postgres.Options{Schema: pgtest.FreshSchema(t)})
		require.NoError(t, err)
		got, err := postgres.Setting(ctx, s, "jit")
		require.NoError(t, s.Close())
		require.NoError(t, err)
		require.Equal(t, tc.want, got, "DSN %q", dsn)
	}
}
