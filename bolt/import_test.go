package bolt_test

import (
	"testing"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
	"github.com/eventstore-go/eventstore/storetest"
)

func TestImportConformance(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts *bolt.Options
	}{
		{"durable", nil},
		{"ReadPageSize=3", &bolt.Options{UnsafeNoSync: true, ReadPageSize: 3}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			storetest.RunImport(t, func(t *testing.T) eventstore.Store { return MustOpen(t, tt.opts) })
		})
	}
}
