package postgres_test

import (
	"context"
	"errors"
	"log"

	"github.com/jackc/pgx/v5"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/postgres"
)

// A read model of orders per customer, kept exactly once: each process of
// the service runs the same code, one of them projects, the others stand
// by. (It needs a server, so it is compiled but not run.) ResetProjection
// rebuilds it, in a deploy step say, while no process runs it.
func ExampleStore_Project() {
	ctx := context.Background()
	s, err := postgres.Open(ctx, "postgres://app@db/app", &postgres.Options{Schema: "shop"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	// The read model is shop.orders_per_customer (customer text PRIMARY
	// KEY, orders bigint). Project returns when ctx ends, when s closes, or
	// when the handler fails:
	err = s.Project(ctx, "orders-per-customer", eventstore.Filter{Types: []string{"OrderPlaced"}},
		func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
			_, err := tx.Exec(ctx, `INSERT INTO shop.orders_per_customer AS o (customer, orders)
				VALUES ($1::jsonb->>'customer', 1) ON CONFLICT (customer) DO UPDATE SET orders = o.orders + 1`, e.Payload)
			return err
		})
	var pe *postgres.ProjectError
	if errors.As(err, &pe) {
		log.Fatalf("order %s at %d: %v", pe.EventID, pe.Position, pe.Err)
	}
}
