package aggregate_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/eventstore-go/eventstore/aggregate"
	"github.com/eventstore-go/eventstore/memory"
)

// BenchmarkLoad compares rebuilding an aggregate from all its events with
// starting from a snapshot taken at its last version.
func BenchmarkLoad(b *testing.B) {
	for _, n := range []int{100, 1000} {
		for _, snap := range []bool{false, true} {
			b.Run(fmt.Sprintf("events=%d/snapshot=%t", n, snap), func(b *testing.B) {
				ctx := context.Background()
				s := memory.New(nil)
				b.Cleanup(func() { s.Close() })
				opts := &aggregate.Options{Types: userTypes()}
				if snap {
					opts.Snapshots, opts.SnapshotEvery = s, uint64(n)
				}
				users := aggregate.NewRepository(s, NewUser, opts)
				u, _ := users.Load(ctx, "u-1")
				if _, err := users.Save(ctx, u, UserCreated{Name: "Ada"}); err != nil {
					b.Fatal(err)
				}
				for i := 1; i < n; i++ {
					if _, err := users.Save(ctx, u, EmailChanged{Email: fmt.Sprintf("ada%d@example.com", i)}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				for b.Loop() {
					u, err := users.Load(ctx, "u-1")
					if err != nil || u.Version != uint64(n) {
						b.Fatal(u.Version, err)
					}
				}
			})
		}
	}
}
