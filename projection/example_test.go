package projection_test

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/memory"
	"github.com/eventstore-go/eventstore/projection"
)

// A read model of the orders not yet shipped, caught up from the log and
// stopped once it reached the head.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := memory.New(nil) // or bolt.Open, or postgres.Open
	defer store.Close()
	for _, e := range []struct{ order, typ string }{
		{"order-1", "OrderPlaced"}, {"order-2", "OrderPlaced"},
		{"order-1", "OrderShipped"}, {"customer-7", "CustomerMoved"},
	} {
		ev, _ := eventstore.NewEvent(e.order, e.typ, nil)
		if _, err := store.Append(ctx, ev); err != nil {
			fmt.Println(err)
			return
		}
	}

	open := map[string]bool{} // the read model; setting a key twice is harmless
	orders := projection.Projection{
		Name:   "open-orders",
		Filter: eventstore.Filter{Types: []string{"OrderPlaced", "OrderShipped"}},
		Handle: func(ctx context.Context, e eventstore.Event) error {
			open[e.AggregateID] = e.Type == "OrderPlaced" // idempotent
			return nil
		},
	}
	err := projection.Run(ctx, store, store, orders, &projection.Options{
		IdleInterval: 10 * time.Millisecond,
		Progress: func(p projection.Progress) {
			if p.Checkpoint == 4 { // the head: the skipped CustomerMoved too
				cancel() // a clean stop: Run saves the checkpoint and returns nil
			}
		},
	})
	fmt.Println("Run:", err)

	var ids []string
	for id, isOpen := range open {
		if isOpen {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	lag, _ := projection.Lag(context.Background(), store, store, "open-orders")
	fmt.Println("open orders:", ids, "lag:", lag)
	// Output:
	// Run: <nil>
	// open orders: [order-2] lag: 0
}
