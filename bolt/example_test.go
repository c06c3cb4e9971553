package bolt_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "eventstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := bolt.Open(filepath.Join(dir, "events.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	_, err = s.Append(ctx,
		eventstore.Event{AggregateID: "order-1", Type: "OrderPlaced", Payload: []byte(`{"total":42}`)},
		eventstore.Event{AggregateID: "order-1", Type: "OrderPaid", Payload: []byte(`{}`)},
	)
	if err != nil {
		log.Fatal(err)
	}
	for e, err := range s.ReadAggregate(ctx, "order-1", 0) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(e.Version, e.Position, e.Type, string(e.Payload))
	}
	// Output:
	// 1 1 OrderPlaced {"total":42}
	// 2 2 OrderPaid {}
}
