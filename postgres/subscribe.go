package postgres

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"iter"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/follow"
)

// DefaultPollInterval is how often a Store that has subscriptions reads the
// head of the log when Options.PollInterval is zero.
const DefaultPollInterval = time.Second

// Reconnection delays of the listening connection.
const (
	minRelisten = 100 * time.Millisecond
	maxRelisten = 5 * time.Second
)

// live is the subscription machinery of a Store: the commit signal its
// subscriptions wait on, and the goroutines that feed it, started by the
// first Subscribe and stopped by Close.
type live struct {
	signal follow.Signal

	mu      sync.Mutex
	started bool
	stopped bool
	cancel  context.CancelFunc
	done    sync.WaitGroup
}

// channelName returns the channel that the trigger of migration 0003
// notifies for schema: "eventstore." and the schema name, or the md5 of a
// name too long for a channel name (63 bytes).
func channelName(schema string) string {
	const prefix = "eventstore."
	if len(prefix)+len(schema) <= 63 {
		return prefix + schema
	}
	sum := md5.Sum([]byte(schema))
	return prefix + hex.EncodeToString(sum[:])
}

// startLive starts, once, the goroutines that wake subscriptions: one that
// LISTENs on a connection of its own (not one of the pool's) and one that
// polls the head every PollInterval, through the pool, in case
// notifications are lost.
func (s *Store) startLive() {
	l := &s.live
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started || l.stopped {
		return
	}
	l.started = true
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.done.Add(2)
	go func() { defer l.done.Done(); s.listen(ctx) }()
	go func() { defer l.done.Done(); s.poll(ctx) }()
}

// stopLive ends every subscription with ErrClosed and stops the goroutines
// of startLive. Close calls it before it closes the pool.
func (s *Store) stopLive() {
	l := &s.live
	l.signal.Close()
	l.mu.Lock()
	l.stopped = true
	cancel := l.cancel
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	l.done.Wait()
}

// poll publishes the head every PollInterval.
func (s *Store) poll(ctx context.Context) {
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	for {
		s.publishHead(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// publishHead reads the head and publishes it. An error is left for the
// next poll: a subscription's own reads report what is wrong.
func (s *Store) publishHead(ctx context.Context) {
	if head, err := s.Head(ctx); err == nil {
		s.live.signal.Publish(head)
	}
}

// listen keeps a connection LISTENing on the schema's channel and publishes
// the position each notification carries. When the connection is lost it
// connects again, with growing delays, and then reads the head, so that
// subscriptions catch up with what committed while it was away (they
// re-read from their last position: nothing is skipped).
func (s *Store) listen(ctx context.Context) {
	cfg := s.pool.Config().ConnConfig.Copy()
	// Close cancels WaitForNotification: drop the connection at once rather
	// than ask the server to cancel a wait it does not run.
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	listenSQL := "LISTEN " + pgx.Identifier{channelName(s.opts.Schema)}.Sanitize()
	delay := minRelisten
	for ctx.Err() == nil {
		if err := s.listenOnce(ctx, cfg, listenSQL, &delay); err != nil && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
			delay = min(2*delay, maxRelisten)
		}
	}
}

// listenOnce connects, LISTENs and publishes notifications until the
// connection fails or ctx ends.
func (s *Store) listenOnce(ctx context.Context, cfg *pgx.ConnConfig, listenSQL string, delay *time.Duration) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, listenSQL); err != nil {
		return err
	}
	*delay = minRelisten
	s.publishHead(ctx) // what committed while no one listened
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if head, err := strconv.ParseUint(n.Payload, 10, 64); err == nil {
			s.live.signal.Publish(head)
		} else {
			s.publishHead(ctx)
		}
	}
}

// Subscribe implements eventstore.Store.
//
// Every statement that inserts events notifies a channel of the schema
// (see migration 0003), from any process or pool. The first Subscribe of a
// Store opens one connection of its own that LISTENs to it, shared by all
// its subscriptions, and reads the head every Options.PollInterval as a
// fallback; when that connection is lost, it reconnects. A woken
// subscription reads the events after the last position it looked at
// through the pool, a page per query, filtered by SQL as Read is (see
// filterSQL): as positions commit in order
// (see "Positions"), it never skips one. NOTIFY makes concurrent commits in
// the database take a lock in turn; appends of a store take one anyway.
func (s *Store) Subscribe(ctx context.Context, afterPosition uint64, filter eventstore.Filter) iter.Seq2[eventstore.Event, error] {
	s.startLive()
	sql, fargs, none := s.subscribeSQL(filter)
	return follow.Seq(ctx, &s.live.signal, afterPosition, func(after, head uint64, yield func(eventstore.Event, error) bool) (uint64, bool) {
		if none || after >= math.MaxInt64 {
			return max(after, head), true
		}
		last := after
		read := s.read(ctx, func(lastRead *eventstore.Event, limit int) (string, []any) {
			from := after
			if lastRead != nil {
				from = lastRead.Position
			}
			return sql, append([]any{int64(from), limit}, fargs...)
		})
		for e, err := range read {
			if err != nil {
				yield(eventstore.Event{}, err)
				return 0, false
			}
			last = e.Position
			if !filter.Match(e) {
				continue // only when the prefix is not UTF-8: see subscribeSQL
			}
			if !yield(e, nil) {
				return 0, false
			}
		}
		// Every event up to head committed before this read began.
		return max(last, head), true
	})
}

// subscribeSQL returns the query of a subscription with filter and its
// arguments beyond position ($1) and limit ($2) (see filterSQL). none
// reports a filter that no event can match.
func (s *Store) subscribeSQL(filter eventstore.Filter) (sql string, args []any, none bool) {
	cond, args, none := filterSQL(filter, 3)
	if none {
		return "", nil, true
	}
	return `SELECT ` + eventColumns + ` FROM ` + s.schemaSQL() + `.events WHERE position > $1 AND ` + cond + ` ORDER BY position LIMIT $2`, args, false
}

// Head implements eventstore.Store: the position in log_head, which an
// append advances in the transaction that inserts its events.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.closed.Load() {
		return 0, eventstore.ErrClosed
	}
	var head int64
	if err := s.pool.QueryRow(ctx, `SELECT position FROM `+s.schemaSQL()+`.log_head WHERE id`).Scan(&head); err != nil {
		return 0, s.mapError(ctx, "head", err)
	}
	return uint64(head), nil
}
