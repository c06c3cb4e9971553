// Command readmodel keeps a stock report of a small shop up to date with
// package projection: a read model built from the events of a bolt file,
// which survives restarts and follows live appends.
//
// It runs the shop twice on the same file, as two starts of an
// application would:
//
//  1. The first start records stock deliveries and orders, catches the
//     report up and stops it cleanly (the checkpoint is saved). More
//     orders arrive while the report is down.
//  2. The second start opens the same file again, prints the report's lag,
//     resumes the report from its checkpoint (no event handled twice),
//     and follows orders that another goroutine places meanwhile, until
//     it has caught up; then it prints the report and a lag of 0.
//
// The report is kept in a JSON file beside the store. It records the
// position of the last event it applied and ignores any event at or before
// it: delivery is at least once, and this makes applying an event twice
// (after a crash) harmless.
//
//	go run ./examples/readmodel [-db path/to/shop.db]
//
// Without -db it uses a file in a temporary directory and removes it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
	"github.com/eventstore-go/eventstore/projection"
)

// The events of the shop. Stock lives in aggregates "sku-<name>", orders
// in "order-<n>"; customers register in "customer-<n>", which the report
// does not read.
type (
	StockReceived struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	}
	OrderPlaced struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	}
	OrderCancelled struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	}
	CustomerRegistered struct {
		Name string `json:"name"`
	}
)

// Report is the read model: stock on hand per SKU and order counts.
type Report struct {
	Applied   uint64         `json:"applied"` // the position of the last event applied
	Stock     map[string]int `json:"stock"`
	Orders    int            `json:"orders"`
	Cancelled int            `json:"cancelled"`

	path    string
	handled int  // events applied since the report was loaded
	repeats int  // events ignored because they were applied already
	verbose bool // print each event applied
}

// loadReport reads the report kept at path, or starts an empty one.
func loadReport(path string) (*Report, error) {
	r := &Report{Stock: map[string]int{}, path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	return r, json.Unmarshal(b, r)
}

// save writes the report to a new file and renames it over the old one,
// so that a crash leaves one or the other, whole.
func (r *Report) save() error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := r.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, r.path)
}

// Handle applies one event: the projection's handler. It is idempotent.
func (r *Report) Handle(_ context.Context, e eventstore.Event) error {
	if e.Position <= r.Applied {
		r.repeats++
		return nil // applied before a crash: at-least-once delivery repeats it
	}
	var p struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	}
	if err := e.Unmarshal(&p); err != nil {
		return err
	}
	switch e.Type {
	case "StockReceived":
		r.Stock[p.SKU] += p.Qty
	case "OrderPlaced":
		r.Stock[p.SKU] -= p.Qty
		r.Orders++
	case "OrderCancelled":
		r.Stock[p.SKU] += p.Qty
		r.Cancelled++
	}
	r.Applied = e.Position
	r.handled++
	if r.verbose {
		fmt.Printf("  report: %s %s (%d %s), %s stock now %d\n", e.AggregateID, e.Type, p.Qty, p.SKU, p.SKU, r.Stock[p.SKU])
	}
	return r.save()
}

// Reset empties the report, for a rebuild.
func (r *Report) Reset(context.Context) error {
	*r = Report{Stock: map[string]int{}, path: r.path, verbose: r.verbose}
	return r.save()
}

func (r *Report) print() {
	fmt.Printf("  report after position %d: %d orders, %d cancelled; stock:", r.Applied, r.Orders, r.Cancelled)
	for _, sku := range slices.Sorted(maps.Keys(r.Stock)) {
		fmt.Printf(" %s=%d", sku, r.Stock[sku])
	}
	fmt.Println()
}

// projectionOf returns the report's projection: the stock and order
// events, not the customers'.
func projectionOf(r *Report) projection.Projection {
	return projection.Projection{
		Name:   "stock-report",
		Filter: eventstore.Filter{Types: []string{"StockReceived", "OrderPlaced", "OrderCancelled"}},
		Handle: r.Handle,
		Reset:  r.Reset,
	}
}

func main() {
	dbPath := flag.String("db", "", "the bolt file (default: a temporary one, removed at exit)")
	flag.Parse()
	if err := run(context.Background(), *dbPath); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, dbPath string) error {
	if dbPath == "" {
		dir, err := os.MkdirTemp("", "readmodel")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		dbPath = filepath.Join(dir, "shop.db")
	}
	reportPath := dbPath + ".report.json"

	fmt.Println("first start:")
	if err := firstStart(ctx, dbPath, reportPath); err != nil {
		return err
	}
	fmt.Println("second start, same file:")
	return secondStart(ctx, dbPath, reportPath)
}

// firstStart records a history, catches the report up, stops it, and
// records more while it is down.
func firstStart(ctx context.Context, dbPath, reportPath string) error {
	store, err := bolt.Open(dbPath, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := record(ctx, store,
		ev("sku-widget", "StockReceived", StockReceived{"widget", 10}),
		ev("sku-gadget", "StockReceived", StockReceived{"gadget", 4}),
		ev("customer-1", "CustomerRegistered", CustomerRegistered{"Ada"}),
		ev("order-1", "OrderPlaced", OrderPlaced{"widget", 3}),
		ev("order-2", "OrderPlaced", OrderPlaced{"gadget", 1}),
		ev("order-2", "OrderCancelled", OrderCancelled{"gadget", 1}),
		ev("customer-2", "CustomerRegistered", CustomerRegistered{"Grace"}),
	); err != nil {
		return err
	}
	rep, err := loadReport(reportPath)
	if err != nil {
		return err
	}
	if err := printLag(ctx, store, "before the report runs"); err != nil {
		return err
	}
	if err := runUntil(ctx, store, rep, func() (uint64, error) { return store.Head(ctx) }); err != nil {
		return err
	}
	rep.print()
	if err := printLag(ctx, store, "caught up, the newest event a customer's"); err != nil {
		return err
	}
	// The report is down; the shop goes on.
	return record(ctx, store,
		ev("order-3", "OrderPlaced", OrderPlaced{"widget", 2}),
		ev("customer-3", "CustomerRegistered", CustomerRegistered{"Edsger"}),
		ev("sku-gadget", "StockReceived", StockReceived{"gadget", 6}),
	)
}

// secondStart reopens the file, resumes the report from its checkpoint and
// follows orders placed live by another goroutine.
func secondStart(ctx context.Context, dbPath, reportPath string) error {
	store, err := bolt.Open(dbPath, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	rep, err := loadReport(reportPath)
	if err != nil {
		return err
	}
	rep.verbose = true
	cp, err := store.LoadCheckpoint(ctx, "stock-report")
	if err != nil {
		return err
	}
	fmt.Printf("  the report resumes after its checkpoint, position %d\n", cp)
	if err := printLag(ctx, store, "3 events recorded while it was down"); err != nil {
		return err
	}

	// Another part of the application keeps taking orders meanwhile.
	last := make(chan uint64, 1)
	errc := make(chan error, 1)
	go func() {
		var pos uint64
		for i, o := range []OrderPlaced{{"widget", 1}, {"gadget", 2}, {"widget", 4}} {
			time.Sleep(100 * time.Millisecond)
			stored, err := store.Append(ctx, ev(fmt.Sprintf("order-%d", 4+i), "OrderPlaced", o))
			if err != nil {
				errc <- err
				return
			}
			pos = stored[0].Position
		}
		last <- pos
	}()
	err = runUntil(ctx, store, rep, func() (uint64, error) {
		select {
		case pos := <-last:
			return pos, nil
		case err := <-errc:
			return 0, err
		}
	})
	if err != nil {
		return err
	}
	rep.print()
	fmt.Printf("  applied %d events since the restart, %d of them twice\n", rep.handled, rep.repeats)
	return printLag(ctx, store, "after following the live orders")
}

// runUntil runs the report's projection until its checkpoint reaches the
// position that target returns (target may block), then stops it cleanly.
func runUntil(ctx context.Context, store *bolt.Store, rep *Report, target func() (uint64, error)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var saved atomic.Uint64
	done := make(chan error, 1)
	go func() {
		done <- projection.Run(ctx, store, store, projectionOf(rep), &projection.Options{
			IdleInterval: 50 * time.Millisecond,
			Progress:     func(p projection.Progress) { saved.Store(p.Checkpoint) },
		})
	}()
	position, err := target()
	if err != nil {
		cancel()
		return errors.Join(err, <-done)
	}
	deadline := time.After(30 * time.Second)
	for saved.Load() < position {
		select {
		case err := <-done:
			return fmt.Errorf("the report stopped early: %w", err)
		case <-deadline:
			cancel()
			return errors.Join(fmt.Errorf("the report did not reach position %d within 30s (checkpoint %d)", position, saved.Load()), <-done)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel() // a clean stop: Run saves the checkpoint and returns nil
	return <-done
}

func printLag(ctx context.Context, store *bolt.Store, why string) error {
	lag, err := projection.Lag(ctx, store, store, "stock-report")
	if err != nil {
		return err
	}
	fmt.Printf("  lag: %d (%s)\n", lag, why)
	return nil
}

// record appends each event in a commit of its own.
func record(ctx context.Context, store eventstore.Store, events ...eventstore.Event) error {
	for _, e := range events {
		if _, err := store.Append(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

func ev(aggregateID, eventType string, payload any) eventstore.Event {
	e, err := eventstore.NewEvent(aggregateID, eventType, payload)
	if err != nil {
		panic(err) // the payloads above always marshal
	}
	return e
}
