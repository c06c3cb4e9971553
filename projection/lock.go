package projection

import (
	"context"
	"reflect"
	"sync"

	"github.com/eventstore-go/eventstore"
)

// locker returns the Locker Run uses: Options.Locker, else the store or the
// checkpoint store when it is a Locker, else the in-process lock.
func locker(o *Options, store eventstore.Store, checkpoints eventstore.CheckpointStore) Locker {
	if o.Locker != nil {
		return o.Locker
	}
	if l, ok := store.(Locker); ok {
		return l
	}
	if l, ok := checkpoints.(Locker); ok {
		return l
	}
	return localLocker{checkpoints: checkpoints}
}

// localLocker locks a projection name within this process, per checkpoint
// store: two runners of one name over one checkpoint store take turns. A
// hold is lost only when released.
type localLocker struct {
	checkpoints eventstore.CheckpointStore
}

// localKey identifies one lock: a checkpoint store and a name.
type localKey struct {
	checkpoints any
	name        string
}

// localLocks holds a semaphore (a channel of capacity 1) per key, for the
// life of the process: there is one per projection name and store.
var localLocks struct {
	mu sync.Mutex
	m  map[localKey]chan struct{}
}

// LockProjection implements Locker.
func (l localLocker) LockProjection(ctx context.Context, name string) (context.Context, func(), error) {
	var cs any = l.checkpoints
	if cs != nil && !reflect.TypeOf(cs).Comparable() {
		cs = nil // cannot key a map: lock the name across all such stores
	}
	key := localKey{cs, name}
	localLocks.mu.Lock()
	if localLocks.m == nil {
		localLocks.m = make(map[localKey]chan struct{})
	}
	sem := localLocks.m[key]
	if sem == nil {
		sem = make(chan struct{}, 1)
		localLocks.m[key] = sem
	}
	localLocks.mu.Unlock()

	// Give up at once if ctx has already ended, even when the lock is free.
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	held, cancel := context.WithCancel(context.Background())
	var once sync.Once
	release := func() {
		once.Do(func() {
			cancel()
			<-sem
		})
	}
	return held, release, nil
}
