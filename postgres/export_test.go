package postgres

// QueueLen returns how many appends wait for the next group commit, so
// that a test can tell when the appends it started have queued.
func QueueLen(s *Store) int {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	return len(s.queue)
}
