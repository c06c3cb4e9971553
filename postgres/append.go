package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

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
// Append returns at most OutcomeWait after ctx ends, whatever its place
// in a group. If ctx ends before its pipeline is sent, it returns ctx's
// error and nothing of it is stored. If ctx ends after, it waits up to
// OutcomeWait for the pipeline's result and returns that: its events if
// they committed, an error matching ctx's error if nothing was stored; and
// if the result has not come by then, an error matching both
// eventstore.ErrUnknownOutcome and ctx's error (the pipeline may still
// commit). A pipeline goes on while any of its appends waits for it; when
// the last one gives up, its statement is cancelled on the server (see
// Open), so that an append alone in its pipeline, or whose whole group
// gives up together, usually learns in time that nothing was stored. A
// connection lost while the pipeline was in flight returns an error
// matching eventstore.ErrUnknownOutcome. After either, retrying the same
// Append (with the same event IDs) is safe.
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
		tags       = make([]*string, n)
		size       = 0
	)
	for i, e := range prepared {
		ids[i] = e.ID
		types[i] = e.Type
		timestamps[i] = pgtype.Timestamptz{Time: e.Timestamp, Valid: true}
		payloads[i] = string(e.Payload)
		size += len(e.Payload)
		if metadata[i], err = metadataJSON(e.Metadata); err != nil {
			return nil, err
		}
		if metadata[i] != nil {
			size += len(*metadata[i])
		}
		if tags[i], err = tagsJSON(e.Tags); err != nil {
			return nil, err
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
		args: []any{ids, aggID, types, timestamps, payloads, metadata, first, n, tags},
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

// OutcomeWait bounds how long an Append whose ctx has ended waits for the
// outcome of the pipeline that carries its events: Append returns at most
// OutcomeWait after its ctx ends, plus the time it takes to be scheduled.
const OutcomeWait = time.Second

// Limits of one group commit.
const (
	maxGroup     = 64       // appends
	maxGroupSize = 16 << 20 // payload and metadata bytes, unless one append alone is larger
)

// appendReq is one Append waiting for, or in, a pipeline.
type appendReq struct {
	ctx  context.Context
	args []any             // the arguments of queries.append
	size int               // payload and metadata bytes
	done chan appendResult // buffered: receives the result once

	// Under Store.gmu.
	group *group // the pipeline that carries it; nil while queued
	gone  bool   // its Append returned without a result
}

// appendResult is what the append statement returned for one append, or
// the pipeline's error.
type appendResult struct {
	current, stored, head int64
	err                   error
}

// group is one pipeline and the appends it carries. Its statements run
// under ctx, which is no one append's: it keeps the values of the first
// append's ctx and is cancelled when the last append still waiting for the
// group gives up.
type group struct {
	reqs   []*appendReq
	ctx    context.Context
	cancel context.CancelFunc

	// Under Store.gmu.
	waiting int  // appends whose Append still waits for the result
	sent    bool // the pipeline is, or may be, on its way to the server
}

// newGroup makes reqs a group. s.gmu must be held.
func newGroup(reqs []*appendReq) *group {
	ctx, cancel := context.WithCancel(context.WithoutCancel(reqs[0].ctx))
	g := &group{reqs: reqs, ctx: ctx, cancel: cancel, waiting: len(reqs)}
	for _, r := range reqs {
		r.group = g
	}
	return g
}

// submit queues r and returns what its statement returned.
//
// A committer goroutine, started by the append that finds none running,
// takes the queue, runs it as one pipeline, hands each append its result
// and goes on with the appends that queued meanwhile. No Append runs a
// pipeline itself, so each one waits for its result or its own ctx,
// whatever its place in the queue, and a result that is there is always
// taken before ctx is looked at. When ctx ends first:
//
//   - If r is queued, or in a group not yet sent, it leaves: the committer
//     sends nothing of it, and submit returns ctx's error.
//   - If r's group was sent, submit waits up to OutcomeWait more for the
//     result, then returns ErrUnknownOutcome. The last append of a group
//     to give up cancels the group's ctx, which asks the server to cancel
//     the statement (see Open): the pipeline stores nothing, and appends
//     still inside their OutcomeWait learn so.
func (s *Store) submit(r *appendReq) (appendResult, error) {
	s.gmu.Lock()
	s.queue = append(s.queue, r)
	if !s.committing {
		s.committing = true
		go s.commitLoop()
	}
	s.gmu.Unlock()

	select {
	case res := <-r.done:
		return res, res.err
	case <-r.ctx.Done():
	}
	if res, ok := received(r); ok {
		return res, res.err
	}

	s.gmu.Lock()
	g := r.group
	if g == nil {
		s.queue = slices.DeleteFunc(s.queue, func(q *appendReq) bool { return q == r })
		s.gmu.Unlock()
		return appendResult{}, r.ctx.Err()
	}
	r.gone = true
	if g.waiting--; g.waiting == 0 {
		g.cancel()
	}
	sent := g.sent
	s.gmu.Unlock()
	if !sent {
		return appendResult{}, r.ctx.Err()
	}

	timer := time.NewTimer(OutcomeWait)
	defer timer.Stop()
	select {
	case res := <-r.done:
		return res, res.err
	case <-timer.C:
	}
	if res, ok := received(r); ok {
		return res, res.err
	}
	return appendResult{}, fmt.Errorf("postgres: append: %w: %w", eventstore.ErrUnknownOutcome, r.ctx.Err())
}

// received returns r's result if it has arrived.
func received(r *appendReq) (appendResult, bool) {
	select {
	case res := <-r.done:
		return res, true
	default:
		return appendResult{}, false
	}
}

// commitLoop runs the queued appends, a group at a time, until the queue
// is empty.
func (s *Store) commitLoop() {
	for {
		s.gmu.Lock()
		if len(s.queue) == 0 {
			s.committing = false
			s.gmu.Unlock()
			return
		}
		n, size := 0, 0
		for _, r := range s.queue {
			if n == maxGroup || (n > 0 && size+r.size > maxGroupSize) {
				break
			}
			n++
			size += r.size
		}
		g := newGroup(slices.Clone(s.queue[:n]))
		s.queue = slices.Delete(s.queue, 0, n)
		s.gmu.Unlock()
		s.commit(g)
	}
}

// commit runs g and hands each of its appends its result. When the server
// refuses a group of several, nothing of it is stored: the appends still
// waiting run again one at a time, to learn which one it refused.
func (s *Store) commit(g *group) {
	sent, results, err := s.run(g)
	g.cancel()
	if err != nil && len(sent) > 1 && !errors.Is(err, eventstore.ErrUnknownOutcome) {
		for _, r := range sent {
			s.gmu.Lock()
			var alone *group
			if !r.gone {
				alone = newGroup([]*appendReq{r})
			}
			s.gmu.Unlock()
			if alone == nil {
				r.done <- appendResult{err: err}
				continue
			}
			s.commit(alone)
		}
		return
	}
	for i, r := range sent {
		if err != nil {
			r.done <- appendResult{err: err}
		} else {
			r.done <- results[i]
		}
	}
}

// run sends g as one pipeline under g's ctx and returns the appends it
// carried, with each one's result. The appends that gave up before it was
// sent are left out.
func (s *Store) run(g *group) ([]*appendReq, []appendResult, error) {
	if s.closed.Load() {
		// Queued before Close: refuse rather than write on a pool the
		// caller may still own (New).
		return g.reqs, nil, fmt.Errorf("postgres: append: %w", eventstore.ErrClosed)
	}
	ctx := g.ctx
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return g.reqs, nil, s.mapError(ctx, "acquire connection", err)
	}
	defer conn.Release()
	s.gmu.Lock()
	g.sent = true
	group := slices.DeleteFunc(slices.Clone(g.reqs), func(r *appendReq) bool { return r.gone })
	s.gmu.Unlock()
	if len(group) == 0 {
		return nil, nil, nil
	}
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
		return group, results, nil
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
		return group, nil, fmt.Errorf("postgres: append: %w", eventstore.ErrClosed)
	}
	return group, nil, err
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
