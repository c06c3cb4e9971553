package bolt

// SetWALLimit sets the log size that makes a commit checkpoint, for the
// crash test's child.
func SetWALLimit(n int64) { walLimit = n }
