package bolt

import (
	"fmt"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/index"
)

// BenchmarkDecodePage decodes a page of 512 records held in memory (and in
// the CPU's caches): the decoding part of a replay, without bbolt. Its
// timings are steadier than BenchmarkReplay's on a busy machine.
func BenchmarkDecodePage(b *testing.B) {
	payload := []byte(`{"amount":1234,"currency":"EUR","note":"a payload of about two hundred bytes, which is what events often weigh","tags":["x","y","z"],"ok":true}`)
	for _, meta := range []string{"none", "short", "uuids"} {
		b.Run("metadata="+meta, func(b *testing.B) {
			const n = 512
			keys := make([][]byte, n)
			recs := make([][]byte, n)
			for i := range n {
				e := eventstore.Event{
					AggregateID: fmt.Sprintf("account-%04d", i/10),
					Type:        fmt.Sprintf("Type%d", i%10),
					Version:     uint64(i%10 + 1),
					Position:    uint64(i + 1),
					Timestamp:   time.Unix(1_700_000_000, int64(i)*1000).UTC(),
					Payload:     payload,
				}
				switch meta {
				case "short":
					e.Metadata = map[string]string{"correlation_id": fmt.Sprintf("corr-%d", i)}
				case "uuids": // as aggregate.Dispatch writes them, one call of two events
					e.Metadata = map[string]string{
						"correlation_id": fmt.Sprintf("0190a7e2-3c4d-7e8f-9a0b-%012x", i/2),
						"causation_id":   fmt.Sprintf("0190a7e2-3c4d-7e8f-9a0b-%012x", 1<<40+i/2),
						"user_id":        fmt.Sprintf("user-%05d", i/2),
					}
				}
				id := make([]byte, 16)
				for j := range id {
					id[j] = byte(i*16 + j*7)
				}
				keys[i] = index.Event(e.AggregateID, e.Version)
				recs[i] = appendEventRecord(nil, &e, id)
			}
			rb := getReadBuf()
			defer putReadBuf(rb)
			page := rb.page
			b.ReportAllocs()
			for b.Loop() {
				page = page[:0]
				var err error
				for i := range n {
					if page, err = rb.d.decodePage(keys[i], recs[i], page); err != nil {
						b.Fatal(err)
					}
				}
				rb.d.finish(page)
			}
			rb.page = page
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
		})
	}
}
