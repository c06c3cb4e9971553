package aggregate_test

import (
	"testing"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/memory"
	"github.com/eventstore-go/eventstore/storetest"
)

func TestRepository_Memory(t *testing.T) {
	storetest.RunRepository(t, func(t *testing.T) eventstore.SnapshottingStore {
		s := memory.New(nil)
		t.Cleanup(func() { s.Close() })
		return s
	})
}
