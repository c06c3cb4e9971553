// Command bank runs bank accounts on the embedded bolt store: snapshots
// every 10 events that change no result when deleted, a snapshot of an old
// shape that is ignored, a write conflict that Run retries, and many
// concurrent deposits that all land.
//
// It works in a temporary directory that it removes, prints what it does,
// and exits non-zero on any failure.
//
//	go run ./examples/bank
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/aggregate"
	"github.com/eventstore-go/eventstore/bolt"
)

// AccountOpened records a new account.
type AccountOpened struct {
	Owner string `json:"owner"`
}

// EventType implements aggregate.Data.
func (AccountOpened) EventType() string { return "AccountOpened" }

// MoneyDeposited records a deposit, in cents.
type MoneyDeposited struct {
	Amount int64 `json:"amount"`
}

// EventType implements aggregate.Data.
func (MoneyDeposited) EventType() string { return "MoneyDeposited" }

// MoneyWithdrawn records a withdrawal, in cents.
type MoneyWithdrawn struct {
	Amount int64 `json:"amount"`
}

// EventType implements aggregate.Data.
func (MoneyWithdrawn) EventType() string { return "MoneyWithdrawn" }

// Account is the aggregate. Its exported fields are its snapshot.
type Account struct {
	aggregate.Base
	Owner   string `json:"owner"`
	Balance int64  `json:"balance"`
}

// NewAccount returns an account with no events.
func NewAccount(id string) *Account { return &Account{Base: aggregate.Base{ID: id}} }

// Apply implements aggregate.Aggregate.
func (a *Account) Apply(e aggregate.Event) error {
	switch d := e.Data.(type) {
	case AccountOpened:
		a.Owner = d.Owner
	case MoneyDeposited:
		a.Balance += d.Amount
	case MoneyWithdrawn:
		a.Balance -= d.Amount
	default:
		return aggregate.UnknownEvent(e)
	}
	a.Version = e.Version
	return nil
}

var errInsufficientFunds = errors.New("insufficient funds")

// Deposit decides a deposit.
func (a *Account) Deposit(amount int64) ([]aggregate.Data, error) {
	if a.Version == 0 {
		return nil, fmt.Errorf("no account %s", a.ID)
	}
	return []aggregate.Data{MoneyDeposited{Amount: amount}}, nil
}

// Withdraw decides a withdrawal.
func (a *Account) Withdraw(amount int64) ([]aggregate.Data, error) {
	if a.Balance < amount {
		return nil, fmt.Errorf("withdraw %d from %d: %w", amount, a.Balance, errInsufficientFunds)
	}
	return []aggregate.Data{MoneyWithdrawn{Amount: amount}}, nil
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
	dir, err := os.MkdirTemp("", "eventstore-bank-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	store, err := bolt.Open(filepath.Join(dir, "bank.db"), nil)
	if err != nil {
		return err
	}
	defer store.Close()

	types := aggregate.NewRegistry()
	aggregate.Register[AccountOpened](types)
	aggregate.Register[MoneyDeposited](types)
	aggregate.Register[MoneyWithdrawn](types)
	var decisions atomic.Int64 // how many times a decide function ran
	opts := &aggregate.Options{
		Types:          types,
		Snapshots:      store, // the snapshot bucket in the same bolt file
		SnapshotEvery:  10,
		SnapshotSchema: "account/v1",
		OnSnapshotError: func(id string, err error) {
			fmt.Fprintf(os.Stderr, "snapshot of %s: %v\n", id, err)
		},
	}
	accounts := aggregate.NewRepository(store, NewAccount, opts)
	deposit := func(amount int64) func(a *Account) ([]aggregate.Data, error) {
		return func(a *Account) ([]aggregate.Data, error) {
			decisions.Add(1)
			return a.Deposit(amount)
		}
	}

	// Open an account and make 24 deposits: snapshots at versions 10 and 20.
	a, err := accounts.Load(ctx, "acc-1")
	if err != nil {
		return err
	}
	if _, err := accounts.Save(ctx, a, AccountOpened{Owner: "Ada"}); err != nil {
		return err
	}
	for range 24 {
		if a, err = accounts.Run(ctx, "acc-1", deposit(100)); err != nil {
			return err
		}
	}
	snap, err := store.LoadSnapshot(ctx, "acc-1")
	if err != nil {
		return err
	}
	fmt.Printf("acc-1: balance %d at version %d; snapshot at version %d: %s\n", a.Balance, a.Version, snap.Version, snap.State)
	if a.Balance != 2400 || a.Version != 25 || snap.Version != 20 {
		return errors.New("unexpected state or snapshot")
	}

	// A domain rule refuses a command; nothing is stored.
	if _, err := accounts.Run(ctx, "acc-1", func(a *Account) ([]aggregate.Data, error) { return a.Withdraw(5000) }); !errors.Is(err, errInsufficientFunds) {
		return fmt.Errorf("overdraft: %v", err)
	}
	fmt.Println("Withdraw 5000: refused,", errInsufficientFunds)

	// A snapshot is only a cache.
	if err := accounts.CheckSnapshot(ctx, "acc-1"); err != nil {
		return err
	}
	if err := store.DeleteSnapshot(ctx, "acc-1"); err != nil {
		return err
	}
	b, err := accounts.Load(ctx, "acc-1")
	if err != nil {
		return err
	}
	fmt.Printf("Snapshot deleted: rebuilt from 25 events, balance %d at version %d\n", b.Balance, b.Version)
	if b.Balance != a.Balance || b.Version != a.Version {
		return errors.New("deleting the snapshot changed the result")
	}
	// A snapshot written by an older shape of Account is ignored.
	if err := store.SaveSnapshot(ctx, eventstore.Snapshot{AggregateID: "acc-1", Version: 25, Schema: "account/v0",
		State: []byte(`{"id":"acc-1","version":25,"owner":"Ada","cents":999999}`)}); err != nil {
		return err
	}
	if b, err = accounts.Load(ctx, "acc-1"); err != nil {
		return err
	}
	fmt.Printf("Old-shape snapshot ignored: balance %d\n", b.Balance)
	if b.Balance != 2400 {
		return errors.New("an old snapshot was misread")
	}

	// A conflict, step by step: another teller deposits between our load
	// and our save, so Run loads again and decides again.
	attempt := 0
	a, err = accounts.Run(ctx, "acc-1", func(a *Account) ([]aggregate.Data, error) {
		attempt++
		fmt.Printf("  attempt %d: loaded balance %d at version %d\n", attempt, a.Balance, a.Version)
		if attempt == 1 {
			other, err := accounts.Load(ctx, "acc-1")
			if err != nil {
				return nil, err
			}
			if _, err := accounts.Save(ctx, other, MoneyDeposited{Amount: 1}); err != nil {
				return nil, err
			}
			fmt.Println("  another teller deposited 1 meanwhile")
		}
		return a.Withdraw(400)
	})
	if err != nil {
		return err
	}
	fmt.Printf("Withdraw 400 after %d attempts: balance %d at version %d\n", attempt, a.Balance, a.Version)
	if attempt != 2 || a.Balance != 2001 {
		return errors.New("the conflict was not retried")
	}

	// Many tellers at once: every deposit lands, conflicts are retried.
	const tellers, each = 8, 25
	decisions.Store(0)
	var wg sync.WaitGroup
	errs := make(chan error, tellers)
	for range tellers {
		wg.Go(func() {
			for range each {
				if _, err := accounts.Run(ctx, "acc-1", deposit(10)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	final, err := accounts.Load(ctx, "acc-1")
	if err != nil {
		return err
	}
	fmt.Printf("%d tellers x %d deposits of 10: balance %d at version %d; %d decisions, so %d retries after conflicts\n",
		tellers, each, final.Balance, final.Version, decisions.Load(), decisions.Load()-tellers*each)
	if final.Balance != 2001+tellers*each*10 || final.Version != a.Version+tellers*each {
		return errors.New("lost deposits")
	}
	return accounts.CheckSnapshot(ctx, "acc-1")
}
