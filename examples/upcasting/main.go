// Command upcasting shows event versioning on the embedded bolt store. A
// first release of a program stores ProductAdded events with a price in
// euros as a float; the second release stores the price in cents with a
// currency, and registers an upcaster from the first shape, so the old
// events reach Apply in the new shape while the stored bytes stay as they
// were. A snapshot taken by the first release is ignored by the second,
// whose state has another shape.
//
// It works in a temporary directory that it removes, prints what it does,
// and exits non-zero on any failure.
//
//	go run ./examples/upcasting
package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/aggregate"
	"github.com/eventstore-go/eventstore/bolt"
)

// --- Release 1 ---

// ProductAddedV1 is ProductAdded as release 1 wrote it.
type ProductAddedV1 struct {
	SKU   string  `json:"sku"`
	Price float64 `json:"price"` // euros
}

// EventType implements aggregate.Data.
func (ProductAddedV1) EventType() string { return "ProductAdded" }

// CartV1 is the cart aggregate of release 1.
type CartV1 struct {
	aggregate.Base
	Total float64 `json:"total"`
}

// Apply implements aggregate.Aggregate.
func (c *CartV1) Apply(e aggregate.Event) error {
	d, ok := e.Data.(ProductAddedV1)
	if !ok {
		return aggregate.UnknownEvent(e)
	}
	c.Total += d.Price
	c.Version = e.Version
	return nil
}

// --- Release 2 ---

// ProductAdded is the current shape: an integer amount of cents and a
// currency.
type ProductAdded struct {
	SKU      string `json:"sku"`
	Cents    int64  `json:"cents"`
	Currency string `json:"currency"`
}

// EventType implements aggregate.Data.
func (ProductAdded) EventType() string { return "ProductAdded" }

// Cart is the cart aggregate of release 2.
type Cart struct {
	aggregate.Base
	Items      []string `json:"items"`
	TotalCents int64    `json:"total_cents"`
}

// Apply implements aggregate.Aggregate.
func (c *Cart) Apply(e aggregate.Event) error {
	d, ok := e.Data.(ProductAdded)
	if !ok {
		return aggregate.UnknownEvent(e)
	}
	c.Items = append(c.Items, d.SKU)
	c.TotalCents += d.Cents
	c.Version = e.Version
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("OK")
}

func run() error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "eventstore-upcasting-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "shop.db")

	if err := release1(ctx, path); err != nil {
		return fmt.Errorf("release 1: %w", err)
	}
	if err := release2(ctx, path); err != nil {
		return fmt.Errorf("release 2: %w", err)
	}
	return nil
}

func release1(ctx context.Context, path string) error {
	store, err := bolt.Open(path, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	types := aggregate.NewRegistry()
	aggregate.Register[ProductAddedV1](types)
	carts := aggregate.NewRepository(store, func(id string) *CartV1 { return &CartV1{Base: aggregate.Base{ID: id}} },
		&aggregate.Options{Types: types, Snapshots: store, SnapshotEvery: 2, SnapshotSchema: "cart/v1"})

	c, err := carts.Load(ctx, "cart-1")
	if err != nil {
		return err
	}
	if _, err := carts.Save(ctx, c, ProductAddedV1{SKU: "book", Price: 12.5}, ProductAddedV1{SKU: "pen", Price: 1.2}); err != nil {
		return err
	}
	fmt.Printf("Release 1: cart-1 total %.2f EUR at version %d (snapshot cart/v1 taken)\n", c.Total, c.Version)
	return nil
}

func release2(ctx context.Context, path string) error {
	store, err := bolt.Open(path, nil)
	if err != nil {
		return err
	}
	defer store.Close()

	types := aggregate.NewRegistry()
	aggregate.Register[ProductAdded](types)
	// Schema 1 -> 2: euros as a float become cents and a currency.
	types.Upcast("ProductAdded", 1, aggregate.UpcastFunc(func(old ProductAddedV1) ProductAdded {
		return ProductAdded{SKU: old.SKU, Cents: int64(math.Round(old.Price * 100)), Currency: "EUR"}
	}))
	carts := aggregate.NewRepository(store, func(id string) *Cart { return &Cart{Base: aggregate.Base{ID: id}} },
		&aggregate.Options{Types: types, Snapshots: store, SnapshotEvery: 2, SnapshotSchema: "cart/v2"})

	snap, err := store.LoadSnapshot(ctx, "cart-1")
	if err != nil {
		return err
	}
	fmt.Printf("Release 2: found snapshot %s at version %d: %s -> ignored, not cart/v2\n", snap.Schema, snap.Version, snap.State)

	c, err := carts.Load(ctx, "cart-1")
	if err != nil {
		return err
	}
	fmt.Printf("Release 2: cart-1 items %v, total %d cents at version %d\n", c.Items, c.TotalCents, c.Version)
	if c.TotalCents != 1370 || len(c.Items) != 2 {
		return errors.New("old events were misread")
	}

	if _, err := carts.Save(ctx, c, ProductAdded{SKU: "ink", Cents: 399, Currency: "EUR"}); err != nil {
		return err
	}
	events, err := eventstore.Events(ctx, store, "cart-1")
	if err != nil {
		return err
	}
	fmt.Println("Stored events, unchanged by upcasting:")
	for _, e := range events {
		schema := e.Metadata[aggregate.MetaSchemaVersion]
		fmt.Printf("  v%d %s schema %s: %s\n", e.Version, e.Type, schema, e.Payload)
	}
	if events[0].Metadata[aggregate.MetaSchemaVersion] != "1" || events[2].Metadata[aggregate.MetaSchemaVersion] != "2" {
		return errors.New("wrong schema versions stored")
	}
	fmt.Println("What Apply sees:")
	for _, e := range events {
		de, err := types.Decode(e)
		if err != nil {
			return err
		}
		fmt.Printf("  v%d %#v\n", e.Version, de.Data)
	}

	c, err = carts.Load(ctx, "cart-1")
	if err != nil {
		return err
	}
	fmt.Printf("Release 2: cart-1 total %d cents at version %d\n", c.TotalCents, c.Version)
	if c.TotalCents != 1769 {
		return errors.New("wrong total")
	}
	return carts.CheckSnapshot(ctx, "cart-1")
}
