//go:build race

package main

// raceEnabled reports whether the tests run with the race detector, so that
// TestMain builds the command with it too.
const raceEnabled = true
