// Command sync shows offline-first devices uploading their events to one
// PostgreSQL server with package replicate: each device keeps a bolt file,
// writes while offline, and copies what is new to the server when it can.
//
// It shows a copy interrupted and resumed (the checkpoint lives on the
// server, one per device), a conflict when both devices wrote the same
// aggregate (reported, the rest copied), and a download: the server's
// catalog copied into a device for a local read copy.
//
// It connects to EVENTSTORE_POSTGRES_DSN, or to
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable, works in a
// schema of its own that it drops when done, and skips with a message when
// no server answers.
//
//	go run ./examples/sync
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
	"github.com/eventstore-go/eventstore/postgres"
	"github.com/eventstore-go/eventstore/replicate"
)

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	dsn := os.Getenv("EVENTSTORE_POSTGRES_DSN")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	var b [4]byte
	rand.Read(b[:])
	schema := "eventstore_sync_" + hex.EncodeToString(b[:])
	openCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	server, err := postgres.Open(openCtx, dsn, &postgres.Options{Schema: schema})
	cancel()
	if err != nil {
		fmt.Printf("SKIP examples/sync: no PostgreSQL answers at %s (%v); run scripts/postgres-up.sh\n", dsn, err)
		return nil
	}
	defer server.Close()
	defer dropSchema(dsn, schema)

	dir, err := os.MkdirTemp("", "eventstore-sync-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	phone, err := bolt.Open(filepath.Join(dir, "phone.db"), nil)
	if err != nil {
		return err
	}
	defer phone.Close()
	laptop, err := bolt.Open(filepath.Join(dir, "laptop.db"), nil)
	if err != nil {
		return err
	}
	defer laptop.Close()

	// Offline, each device writes its own aggregates: notes it created.
	for i := range 25 {
		if err := write(ctx, phone, fmt.Sprintf("note-phone-%d", i%5), "NoteEdited", fmt.Sprintf(`{"text":"edit %d"}`, i)); err != nil {
			return err
		}
	}
	for i := range 10 {
		if err := write(ctx, laptop, fmt.Sprintf("note-laptop-%d", i%2), "NoteEdited", fmt.Sprintf(`{"text":"edit %d"}`, i)); err != nil {
			return err
		}
	}
	// ... and both edited the shared shopping list: one aggregate, two
	// writers. The server can keep only one history of it.
	if err := write(ctx, phone, "list-shopping", "ItemAdded", `{"item":"milk"}`); err != nil {
		return err
	}
	if err := write(ctx, laptop, "list-shopping", "ItemAdded", `{"item":"bread"}`); err != nil {
		return err
	}

	upload := func(device string) *replicate.Options {
		return &replicate.Options{
			Checkpoint: "from:" + device, // one checkpoint per device
			Metadata:   map[string]string{"origin": device},
			BatchSize:  10,
			OnConflict: replicate.Skip,
		}
	}

	// The phone's upload is cut off after its first batch (the network
	// dropped): ctx ends, the copy stops.
	cutCtx, cut := context.WithCancel(ctx)
	opts := upload("phone")
	opts.Progress = func(p replicate.Progress) {
		fmt.Printf("phone: uploaded up to %d of %d\n", p.Position, p.Head)
		cut()
	}
	stats, err := replicate.Copy(cutCtx, phone, server, opts)
	if !errors.Is(err, context.Canceled) {
		return fmt.Errorf("interrupted upload: %v", err)
	}
	fmt.Printf("phone: interrupted after %d events\n", stats.Copied)

	// Back online: the same call resumes from the server's checkpoint.
	stats, err = replicate.Copy(ctx, phone, server, upload("phone"))
	if err != nil {
		return err
	}
	fmt.Printf("phone: resumed, %d more events, up to position %d\n", stats.Copied, stats.Checkpoint)

	// The laptop uploads; its shopping list conflicts with the phone's.
	stats, err = replicate.Copy(ctx, laptop, server, upload("laptop"))
	if err != nil {
		return err
	}
	fmt.Printf("laptop: %d events uploaded\n", stats.Copied)
	for _, c := range stats.Conflicts {
		fmt.Printf("laptop: conflict on %s: the server has version %d from another device; %d laptop event(s) of it kept local\n",
			c.AggregateID, c.Actual, stats.ConflictSkipped)
	}

	// Every event on the server once, with its origin.
	origins := map[string]int{}
	for e, err := range server.ReadAll(ctx, 0) {
		if err != nil {
			return err
		}
		origins[e.Metadata["origin"]]++
	}
	fmt.Printf("server: %d events from the phone, %d from the laptop\n", origins["phone"], origins["laptop"])

	// The other direction: the laptop gets a read copy of the phone's
	// notes from the server.
	stats, err = replicate.Copy(ctx, server, laptop, &replicate.Options{
		Checkpoint: "from:server",
		Filter:     eventstore.Filter{AggregatePrefix: "note-phone-"},
	})
	if err != nil {
		return err
	}
	v, err := laptop.Version(ctx, "note-phone-0")
	if err != nil {
		return err
	}
	fmt.Printf("laptop: downloaded %d of the phone's note events; note-phone-0 is at version %d\n", stats.Copied, v)
	return nil
}

// write appends one event at the end of an aggregate.
func write(ctx context.Context, s eventstore.Store, aggregateID, typ, payload string) error {
	_, err := s.Append(ctx, eventstore.Event{AggregateID: aggregateID, Type: typ, Payload: []byte(payload)})
	return err
}

func dropSchema(dsn, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE") //nolint:errcheck
}
