//go:build !unix

package bolt_test

import "time"

// cpuTime is not available on this system.
func cpuTime() (time.Duration, bool) { return 0, false }
