package bolt_test

import (
	"testing"

	"github.com/eventstore-go/eventstore/bolt"
	"github.com/eventstore-go/eventstore/storetest"
)

func TestCheckpoints(t *testing.T) {
	storetest.RunCheckpoints(t, func(t *testing.T) storetest.CheckpointingStore { return MustOpen(t, nil) })
}

func TestCheckpoints_NoSync(t *testing.T) {
	storetest.RunCheckpoints(t, func(t *testing.T) storetest.CheckpointingStore {
		return MustOpen(t, &bolt.Options{UnsafeNoSync: true})
	})
}
