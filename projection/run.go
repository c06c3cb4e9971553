package projection

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/eventstore-go/eventstore"
)

// Run keeps the projection p up to date until ctx ends.
//
// It waits for the lock on p.Name (see Locker and Options.Locker), then
// loads the checkpoint p.Name from checkpoints (after taking the lock, so
// it continues where the previous holder stopped), catches up with the
// events after it that p.Filter selects, and follows new ones as they
// commit, through store.Subscribe. It calls p.Handle for each event in
// position order and saves the checkpoint after every Options.BatchSize
// events, when no event arrived for Options.IdleInterval, and when it
// stops. The checkpoint saved is the position of the last event handled,
// or, while caught up, the store's head when no selected event lies
// before it.
//
// When the lock's hold is lost, Run stops handling at once, without saving
// the checkpoint (the new holder may already run from it), and waits for
// the lock again.
//
// Run returns nil when ctx ends: it has then saved the checkpoint of every
// event handled, on a context that ignores ctx's end, bounded by
// StopTimeout. Any other return is a failure: an error matching
// ErrInvalidProjection for a p it refuses, a *HandlerError when p.Handle
// failed (the checkpoint saved then is that of the events before it), or
// an error of the store, the checkpoint store or the Locker, such as one
// matching eventstore.ErrClosed (an error that comes with the loss of the
// hold is taken as that loss). A nil opts means every default.
func Run(ctx context.Context, store eventstore.Store, checkpoints eventstore.CheckpointStore, p Projection, opts *Options) error {
	if err := p.validate(); err != nil {
		return err
	}
	if store == nil || checkpoints == nil {
		return fmt.Errorf("projection %q: nil store or checkpoint store", p.Name)
	}
	o := opts.withDefaults()
	r := &runner{store: store, checkpoints: checkpoints, p: p, o: o, locker: locker(&o, store, checkpoints)}
	return r.run(ctx)
}

// RunAll runs the projections ps side by side, each as Run does, until ctx
// ends or one of them fails. The first failure stops the others and is
// returned; when ctx ends they all stop cleanly and RunAll returns nil.
// Projections are checked up front: an invalid one, or two of the same
// Name, fail with an error matching ErrInvalidProjection before any runs.
// With no projections it returns nil at once.
func RunAll(ctx context.Context, store eventstore.Store, checkpoints eventstore.CheckpointStore, ps []Projection, opts *Options) error {
	seen := make(map[string]bool, len(ps))
	for i := range ps {
		if err := ps[i].validate(); err != nil {
			return err
		}
		if seen[ps[i].Name] {
			return fmt.Errorf("%w %q: name given twice", ErrInvalidProjection, ps[i].Name)
		}
		seen[ps[i].Name] = true
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, p := range ps {
		wg.Go(func() {
			if err := Run(ctx, store, checkpoints, p, opts); err != nil {
				once.Do(func() {
					first = err
					cancel()
				})
			}
		})
	}
	wg.Wait()
	return first
}

// runner is one Run.
type runner struct {
	store       eventstore.Store
	checkpoints eventstore.CheckpointStore
	p           Projection
	o           Options
	locker      Locker
	rebuilt     bool // Options.Rebuild done: once per Run
}

// run takes the lock, runs while it holds it, and takes it again when the
// hold is lost, until ctx ends or a failure.
func (r *runner) run(ctx context.Context) error {
	for {
		held, release, err := r.locker.LockProjection(ctx, r.p.Name)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("projection %q: lock: %w", r.p.Name, err)
		}
		err = r.runHeld(ctx, held)
		release()
		if err != nil || ctx.Err() != nil {
			return err
		}
		// The hold was lost: wait for the lock again.
	}
}

// runHeld runs the projection while held lasts. It returns nil when ctx
// ends or the hold is lost.
func (r *runner) runHeld(ctx, held context.Context) error {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(held, cancel)()

	// stopped reports an error that is only the end of ctx or of the hold.
	stopped := func() bool { return hctx.Err() != nil }

	if r.o.Rebuild && !r.rebuilt {
		if r.p.Reset != nil {
			if err := r.p.Reset(hctx); err != nil {
				if stopped() {
					return nil
				}
				return fmt.Errorf("projection %q: reset: %w", r.p.Name, err)
			}
		}
		if err := r.checkpoints.SaveCheckpoint(hctx, r.p.Name, 0); err != nil {
			if stopped() {
				return nil
			}
			return fmt.Errorf("projection %q: save checkpoint 0 to rebuild: %w", r.p.Name, err)
		}
		r.rebuilt = true
	}
	start, err := r.checkpoints.LoadCheckpoint(hctx, r.p.Name)
	if err != nil {
		if stopped() {
			return nil
		}
		return fmt.Errorf("projection %q: load checkpoint: %w", r.p.Name, err)
	}
	return r.follow(ctx, held, hctx, start)
}

// item is what the subscription's goroutine passes on.
type item struct {
	e   eventstore.Event
	err error
}

// follow handles the events after start until hctx ends (ctx ended or the
// hold was lost) or a failure.
func (r *runner) follow(ctx, held, hctx context.Context, start uint64) (err error) {
	f := &follower{runner: r, saved: start, done: start}

	// A goroutine pulls the subscription into a buffer of a batch, so that
	// this one can tell whether the next event is ready.
	subCtx, cancelSub := context.WithCancel(hctx)
	ch := make(chan item, r.o.BatchSize)
	var pump sync.WaitGroup
	pump.Go(func() {
		defer close(ch)
		for e, err := range r.store.Subscribe(subCtx, start, r.p.Filter) {
			select {
			case ch <- item{e, err}:
			case <-subCtx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	defer func() {
		cancelSub()
		pump.Wait()
	}()

	// On the way out: a clean stop saves what was handled; a lost hold
	// saves nothing (another runner may own the checkpoint already); a
	// failure saves the events handled before it.
	defer func() {
		if held.Err() != nil && ctx.Err() == nil {
			return
		}
		if serr := f.saveDetached(ctx); serr != nil {
			err = errors.Join(err, serr)
		}
	}()

	idle := time.NewTimer(r.o.IdleInterval)
	defer idle.Stop()
	for {
		if hctx.Err() != nil {
			return nil
		}
		select {
		case it, ok := <-ch:
			if hctx.Err() != nil {
				return nil // stop handling at once when the hold is lost
			}
			if !ok { // Subscribe ends only with an error; never trust that
				return fmt.Errorf("projection %q: subscription ended", r.p.Name)
			}
			if it.err != nil {
				if hctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("projection %q: subscribe: %w", r.p.Name, it.err)
			}
			if err := r.p.Handle(hctx, it.e); err != nil {
				if hctx.Err() != nil {
					return nil // not handled: ctx or the hold ended
				}
				return &HandlerError{Projection: r.p.Name, Position: it.e.Position, EventID: it.e.ID, Err: err}
			}
			f.done = it.e.Position
			f.handled++
			if f.handled >= r.o.BatchSize {
				if err := f.save(hctx); err != nil {
					if hctx.Err() != nil {
						return nil
					}
					return err
				}
			}
			idle.Reset(r.o.IdleInterval)
		case <-idle.C:
			if err := f.advance(hctx); err != nil {
				if hctx.Err() != nil {
					return nil
				}
				return err
			}
			if f.done > f.saved {
				if err := f.save(hctx); err != nil {
					if hctx.Err() != nil {
						return nil
					}
					return err
				}
			}
			idle.Reset(r.o.IdleInterval)
		case <-hctx.Done():
			return nil
		}
	}
}

// follower is the progress of one follow.
type follower struct {
	*runner
	saved   uint64 // the checkpoint last saved (or loaded)
	done    uint64 // every selected event up to here is handled
	handled int    // events handled since the last save
}

// save saves done as the checkpoint.
func (f *follower) save(ctx context.Context) error {
	if err := f.checkpoints.SaveCheckpoint(ctx, f.p.Name, f.done); err != nil {
		return fmt.Errorf("projection %q: save checkpoint %d: %w", f.p.Name, f.done, err)
	}
	f.saved = f.done
	n := f.handled
	f.handled = 0
	if f.o.Progress != nil {
		f.o.Progress(Progress{Projection: f.p.Name, Checkpoint: f.done, Handled: n})
	}
	return nil
}

// saveDetached saves done, if it moved, on a context that keeps ctx's
// values but not its end, for at most StopTimeout.
func (f *follower) saveDetached(ctx context.Context) error {
	if f.done == f.saved {
		return nil
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), StopTimeout)
	defer cancel()
	return f.save(sctx)
}

// advance moves done over events the filter does not select, up to the
// head, when no selected event lies between done and the head: the
// subscription has then nothing left to yield up to the head. Reading the
// head first makes that safe: the read that follows sees every event up
// to it.
func (f *follower) advance(ctx context.Context) error {
	head, err := f.store.Head(ctx)
	if err != nil {
		return fmt.Errorf("projection %q: read head: %w", f.p.Name, err)
	}
	if head <= f.done {
		return nil
	}
	for e, err := range f.store.Read(ctx, f.p.Filter, f.done) {
		if err != nil {
			return fmt.Errorf("projection %q: read: %w", f.p.Name, err)
		}
		if e.Position <= head {
			return nil // a selected event is on its way: not caught up
		}
		break
	}
	f.done = head
	return nil
}
