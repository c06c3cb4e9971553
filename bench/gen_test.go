package bench

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/eventstore-go/eventstore"
)

// genVersion is the version of the event generator: bump it whenever what
// the generator yields for a seed changes. It is part of the fixture
// cache's key.
const genVersion = 1

// The payload sizes the generator draws: a log-normal spread with a
// median of payloadMedian bytes, clamped to [payloadMin, payloadMax].
const (
	payloadMin    = 100
	payloadMedian = 250
	payloadMax    = 2048
	payloadSigma  = 0.6
)

// gen makes realistic events: what an application's commands append. Each
// call (one command) holds 1 to 3 events of one aggregate with their own
// IDs, one timestamp, and metadata of their own: a correlation ID, a
// causation ID (the command's) and a user ID, shared by the events of the
// call and no other. Payloads are JSON documents of a realistic spread of
// sizes (see payloadMedian). The same seed always yields the same events.
type gen struct {
	r    *rand.Rand
	seq  int // events made so far
	call int // calls made so far
}

func newGen(seed uint64) *gen {
	return &gen{r: rand.New(rand.NewPCG(seed, genVersion))}
}

// callSize returns the number of events of the next call: 1 (half the
// calls), 2 (a third) or 3.
func (g *gen) callSize() int {
	switch n := g.r.IntN(6); {
	case n < 3:
		return 1
	case n < 5:
		return 2
	}
	return 3
}

// payloadSize draws a payload size.
func (g *gen) payloadSize() int {
	n := payloadMedian * math.Exp(payloadSigma*g.r.NormFloat64())
	return int(min(max(n, payloadMin), payloadMax))
}

// words fill the note field of payloads: text compresses as text does.
var words = []string{
	"invoice", "payment", "monthly", "services", "rendered", "customer", "account", "transfer",
	"balance", "refund", "order", "shipping", "delivered", "warehouse", "pending", "approved",
	"the", "for", "and", "of", "to", "with", "by", "on", "at", "from", "per", "as", "agreed",
}

// payload returns a JSON document of exactly size bytes (at least the
// fixed fields' length, about 100 bytes).
func (g *gen) payload(size int) []byte {
	p := fmt.Appendf(make([]byte, 0, size), `{"account":"acct-%06d","amount":%d,"currency":"EUR","reference":"INV-2026-%06d","note":"`,
		g.r.IntN(1_000_000), g.r.IntN(1_000_000), g.r.IntN(1_000_000))
	for len(p)+2 < size {
		w := words[g.r.IntN(len(words))]
		if room := size - 2 - len(p); len(w)+1 > room {
			for range room {
				p = append(p, 'x')
			}
			break
		}
		p = append(append(p, w...), ' ')
	}
	return append(p, `"}`...)
}

// uuid7 returns a UUIDv7 of the time ts with random bits from g.
func (g *gen) uuid7(ts time.Time) string {
	var u uuid.UUID
	binary.BigEndian.PutUint64(u[8:], g.r.Uint64())
	binary.BigEndian.PutUint64(u[0:], g.r.Uint64())
	ms := uint64(ts.UnixMilli())
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	u[6] = 0x70 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	return u.String()
}

// next returns the events of one call: n events of aggregateID at versions
// from+1, from+2, ..., with IDs, the timestamp ts, and the call's metadata.
func (g *gen) next(aggregateID string, from uint64, n int, ts time.Time) []eventstore.Event {
	g.call++
	meta := map[string]string{
		"correlation_id": g.uuid7(ts),
		"causation_id":   g.uuid7(ts),
		"user_id":        fmt.Sprintf("user-%05d", g.r.IntN(50_000)),
	}
	events := make([]eventstore.Event, n)
	for i := range events {
		g.seq++
		events[i] = eventstore.Event{
			ID:          g.uuid7(ts),
			AggregateID: aggregateID,
			Type:        eventTypes[g.r.IntN(len(eventTypes))],
			Payload:     g.payload(g.payloadSize()),
			Metadata:    meta,
			Timestamp:   ts,
			Version:     from + 1 + uint64(i),
		}
	}
	return events
}
