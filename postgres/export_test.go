package postgres

import "context"

// QueueLen returns how many appends wait for the next group commit, so
// that a test can tell when the appends it started have queued.
func QueueLen(s *Store) int {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	return len(s.queue)
}

// Committing reports whether a group commit runs: with QueueLen 0, every
// append started has been taken into a pipeline.
func Committing(s *Store) bool {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	return s.committing
}

// ProjectionLockKey is the advisory lock key of projection name in schema,
// so that a test can find its holder in pg_locks.
func ProjectionLockKey(schema, name string) int64 { return projectionKey(schema, name) }

// Setting returns the value of the run-time parameter name on one of the
// store's connections.
func Setting(ctx context.Context, s *Store, name string) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v)
	return v, err
}
