package memory_test

import (
	"testing"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/memory"
	"github.com/eventstore-go/eventstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) eventstore.Store {
		s := memory.New(nil)
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestSnapshotConformance(t *testing.T) {
	storetest.RunSnapshots(t, func(t *testing.T) eventstore.SnapshotStore {
		s := memory.New(nil)
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestPayloadLimit(t *testing.T) {
	storetest.RunPayloadLimit(t, func(t *testing.T, maxPayload int) eventstore.Store {
		s := memory.New(&memory.Options{MaxPayloadSize: maxPayload})
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestImportConformance(t *testing.T) {
	storetest.RunImport(t, func(t *testing.T) eventstore.Store {
		s := memory.New(nil)
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestCheckpointConformance(t *testing.T) {
	storetest.RunCheckpoints(t, func(t *testing.T) storetest.CheckpointingStore {
		s := memory.New(nil)
		t.Cleanup(func() { s.Close() })
		return s
	})
}
