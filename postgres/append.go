package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/storekit"
)

// Append implements eventstore.Store.
//
// It validates events with storekit.Prepare before any SQL runs, then
// sends one pipeline, in one round trip: BEGIN; lock log_head (the lock that
// serializes appends and hands out positions, held until COMMIT); one
// statement per append that reads the aggregate's version, looks up the
// event IDs and, if the append is neither a retry nor a conflict, inserts
// its events and advances log_head; COMMIT. The lock is held for the time
// the server takes to run the statements and flush the commit, never
// across a network round trip.
//
// Appends that arrive while a pipeline is in flight wait and then go
// together in the next one (group commit), each with its own statement: a
// statement sees the effects of those before it, so each append is checked
// as if it ran alone, and a conflict or retry of one commits nothing of it
// and does not affect the others. A retry or a conflict is decided by the
// shared rules (storekit.CheckRetry, storekit.AssignVersions).
//
// A connection lost while the pipeline was in flight returns an error
// matching eventstore.ErrUnknownOutcome. So does ctx ending while the
// append is in flight together with others (the pipeline goes on; the
// append that runs it returns when it ends). An append whose ctx ends
// while it waits for a pipeline, or while it is alone in one (which ctx
// cancels on the server, see Open), stores nothing.
func (s *Store) Append(ctx context.Context, events ...eventstore.Event) ([]eventstore.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, eventstore.ErrClosed
	}
	prepared, err := storekit.Prepare(events, s.opts.MaxPayloadSize)
	if err != nil || len(prepared) == 0 {
		return nil, err
	}

	n := len(prepared)
	var (
		aggID      = prepared[0].AggregateID
		ids        = make([]string, n)
		types      = make([]string, n)
		timestamps = make([]pgtype.Timestamptz, n)
		payloads   = make([]string, n)
		metadata   = make([]*string, n)
		size       = 0
	)
	for i, e := range prepared {
		ids[i] = e.ID
		types[i] = e.Type
		timestamps[i] = pgtype.Timestamptz{Time: e.Timestamp, Valid: true}
		payloads[i] = string(e.Payload)
		size += len(e.Payload)
		if e.Metadata != nil {
			m, err := json.Marshal(e.Metadata)
			if err != nil {
				return nil, fmt.Errorf("postgres: encode metadata: %w", err)
			}
			ms := string(m)
			metadata[i] = &ms
			size += len(ms)
		}
	}
	// The first version asked for; 0 appends at the end. A version beyond
	// bigint never matches, and AssignVersions below reports the conflict.
	first := int64(-1)
	if v := prepared[0].Version; v <= math.MaxInt64 {
		first = int64(v)
	}

	r := &appendReq{
		ctx:  ctx,
		args: []any{ids, aggID, types, timestamps, payloads, metadata, first, n},
		size: size,
		done: make(chan appendResult, 1),
	}
	res, err := s.submit(r)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w: %w", ctxErr, err)
		}
		if errors.Is(err, eventstore.ErrConflict) {
			// The version check saw every committed append, so only a writer
			// that bypasses log_head gets here.
			v, _ := s.Version(context.WithoutCancel(ctx), aggID)
			return nil, &eventstore.ConflictError{AggregateID: aggID, Expected: max(prepared[0].Version, 1) - 1, Actual: v}
		}
		return nil, err
	}

	if res.stored > 0 {
		// A retry or a duplicate; nothing was written. Stored events never
		// change, so reading them after the commit is as good as inside it.
		return s.retry(ctx, events, prepared)
	}
	if err := storekit.AssignVersions(prepared, uint64(res.current)); err != nil {
		return nil, err
	}
	// The statement inserted the events at these versions and positions.
	for i := range prepared {
		prepared[i].Position = uint64(res.head) + 1 + uint64(i)
	}
	return prepared, nil
}

// Limits of one group commit.
const (
	maxGroup     = 64       // appends
	maxGroupSize = 16 << 20 // payload and metadata bytes, unless one append alone is larger
)

// appendReq is one Append waiting for, or in, a pipeline.
type appendReq struct {
	ctx  context.Context
	args []any // the arguments of queries.append
	size int   // payload and metadata bytes
	done chan appendResult

	// Under Store.gmu.
	taken bool // in a pipeline
	lead  bool // told to run the next pipeline
	solo  bool // alone in its pipeline, which runs under its ctx
}

// appendResult is what the append statement returned for one append, or
// the pipeline's error; lead instead tells the receiver to run the next
// pipeline.
type appendResult struct {
	lead                  bool
	current, stored, head int64
	err                   error
}

// submit queues r and returns what its statement returned. One waiting
// Append at a time leads: it takes the queue, runs it as one pipeline,
// hands each append its result, and passes the lead to the first append
// that queued meanwhile.
func (s *Store) submit(r *appendReq) (appendResult, error) {
	s.gmu.Lock()
	s.queue = append(s.queue, r)
	if !s.leading {
		s.leading = true
		r.lead = true
		r.done <- appendResult{lead: true}
	}
	s.gmu.Unlock()

	ctxDone := r.ctx.Done()
	for {
		select {
		case res := <-r.done:
			if res.lead {
				s.lead()
				continue
			}
			return res, res.err
		case <-ctxDone:
			s.gmu.Lock()
			switch {
			case !r.taken && !r.lead:
				// Still queued: leave, and nothing was sent.
				s.queue = slices.DeleteFunc(s.queue, func(q *appendReq) bool { return q == r })
				s.gmu.Unlock()
				return appendResult{}, r.ctx.Err()
			case r.taken && !r.solo:
				// In flight with others: the pipeline goes on without us.
				s.gmu.Unlock()
				return appendResult{}, fmt.Errorf("postgres: append: %w: %w", eventstore.ErrUnknownOutcome, r.ctx.Err())
			}
			// About to lead, or in flight alone under ctx, which cancels it
			// on the server: the result comes soon.
			s.gmu.Unlock()
			ctxDone = nil
		}
	}
}

// lead runs the queued appends as one pipeline, delivers their results and
// passes the lead on.
func (s *Store) lead() {
	s.gmu.Lock()
	var group []*appendReq
	size := 0
	for _, r := range s.queue {
		if len(group) == maxGroup || (len(group) > 0 && size+r.size > maxGroupSize) {
			break
		}
		group = append(group, r)
		size += r.size
		r.taken = true
	}
	s.queue = slices.Delete(s.queue, 0, len(group))
	group[0].solo = len(group) == 1
	s.gmu.Unlock()

	results, err := s.runGroup(group)
	if err != nil && len(group) > 1 && !errors.Is(err, eventstore.ErrUnknownOutcome) {
		// Nothing of the group is stored. The server refused one append,
		// or the pool closed: learn which, one append at a time.
		for _, r := range group {
			res, err := s.runGroup([]*appendReq{r})
			if err != nil {
				res = []appendResult{{err: err}}
			}
			r.done <- res[0]
		}
	} else {
		for i, r := range group {
			if err != nil {
				r.done <- appendResult{err: err}
			} else {
				r.done <- results[i]
			}
		}
	}

	s.gmu.Lock()
	defer s.gmu.Unlock()
	if len(s.queue) == 0 {
		s.leading = false
		return
	}
	next := s.queue[0]
	next.lead = true
	next.done <- appendResult{lead: true}
}

// runGroup runs one pipeline for group and returns each append's result.
// A group of one runs under its append's ctx; a larger group runs until
// every append in it has given up.
func (s *Store) runGroup(group []*appendReq) ([]appendResult, error) {
	if s.closed.Load() {
		// Queued before Close: refuse rather than write on a pool the
		// caller may still own (New).
		return nil, fmt.Errorf("postgres: append: %w", eventstore.ErrClosed)
	}
	ctx := group[0].ctx
	if len(group) > 1 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		var left atomic.Int32
		left.Store(int32(len(group)))
		for _, r := range group {
			stop := context.AfterFunc(r.ctx, func() {
				if left.Add(-1) == 0 {
					cancel()
				}
			})
			defer stop()
		}
	}

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, s.mapError(ctx, "acquire connection", err)
	}
	defer conn.Release()
	batch := &pgx.Batch{}
	batch.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	batch.Queue(s.sql.lockHead)
	for _, r := range group {
		batch.Queue(s.sql.append, r.args...)
	}
	batch.Queue("COMMIT")
	results := make([]appendResult, len(group))
	err = func() error {
		br := conn.SendBatch(ctx, batch)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		for i := range results {
			res := &results[i]
			if err := br.QueryRow().Scan(&res.current, &res.stored, &res.head); err != nil {
				return err
			}
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		return br.Close()
	}()
	if err == nil {
		return results, nil
	}
	if pc := conn.Conn().PgConn(); !pc.IsClosed() && pc.TxStatus() != 'I' {
		// The server refused a statement: end its aborted transaction so
		// the connection goes back to the pool clean.
		if _, rbErr := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); rbErr != nil {
			pc.Close(context.Background()) //nolint:errcheck // the pool drops it
		}
	}
	err = commitError(err)
	if s.closed.Load() && !errors.Is(err, eventstore.ErrUnknownOutcome) {
		return nil, fmt.Errorf("postgres: append: %w", eventstore.ErrClosed)
	}
	return nil, err
}

// retry answers an Append some of whose event IDs are stored: the stored
// events if the call repeats a committed one, else an error matching
// eventstore.ErrDuplicateEvent.
func (s *Store) retry(ctx context.Context, events, prepared []eventstore.Event) ([]eventstore.Event, error) {
	ids := make([]string, len(prepared))
	for i, e := range prepared {
		ids[i] = e.ID
	}
	rows, err := s.pool.Query(ctx, s.sql.byIDs, ids)
	if err != nil {
		return nil, s.mapError(ctx, "look up event IDs", err)
	}
	byID, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (eventstore.Event, error) { return scanEvent(row, nil) })
	if err != nil {
		return nil, s.mapError(ctx, "look up event IDs", err)
	}
	stored := make([]eventstore.Event, len(prepared))
	found := make([]bool, len(prepared))
	for i, p := range prepared {
		for _, e := range byID {
			if e.ID == p.ID {
				stored[i], found[i] = e, true
			}
		}
	}
	if err := storekit.CheckRetry(events, stored, found); err != nil {
		return nil, err
	}
	return stored, nil
}

// Version implements eventstore.Store.
func (s *Store) Version(ctx context.Context, aggregateID string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.closed.Load() {
		return 0, eventstore.ErrClosed
	}
	if !validName(aggregateID) {
		return 0, nil
	}
	var v int64
	if err := s.pool.QueryRow(ctx, s.sql.version, aggregateID).Scan(&v); err != nil {
		return 0, s.mapError(ctx, "read aggregate version", err)
	}
	return uint64(v), nil
}
