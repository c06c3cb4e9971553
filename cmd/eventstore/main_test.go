package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

// binary is the eventstore command, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eventstore-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binary = filepath.Join(dir, "eventstore")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the eventstore command:", err)
		os.Exit(2)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// result is what a run of the command gave.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs the command with args and returns its output and exit status.
func cli(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(errb.String(), "panic:") || strings.Contains(errb.String(), "goroutine ") {
		t.Fatalf("eventstore %s crashed:\n%s", strings.Join(args, " "), errb.String())
	}
	return result{out.String(), errb.String(), code}
}

// ok runs the command and fails the test unless it exits 0 with nothing
// on stderr (no progress bar: stderr is not a terminal).
func ok(t *testing.T, args ...string) string {
	t.Helper()
	r := cli(t, args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("eventstore %s: exit %d\nstderr: %s\nstdout: %s", strings.Join(args, " "), r.code, r.stderr, r.stdout)
	}
	return r.stdout
}

// jsonLines decodes NDJSON output.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var m map[string]any
		require.NoError(t, dec.Decode(&m), out)
		objs = append(objs, m)
	}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line != "" {
			require.True(t, json.Valid([]byte(line)), "not one object per line: %q", line)
		}
	}
	return objs
}

// t0 is the first fixture event's timestamp; each next event is a minute
// later.
var t0 = time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC)

// fixtureEvents are the events the fixture stores hold, in position
// order: three users and two orders, several types, metadata, a
// multi-line payload and names that need quoting.
func fixtureEvents() [][]eventstore.Event {
	ev := func(i int, agg, typ, payload string, md map[string]string) eventstore.Event {
		return eventstore.Event{
			ID:          fmt.Sprintf("0190a1b2-c3d4-7e5f-8a9b-%012d", i),
			AggregateID: agg, Type: typ, Payload: []byte(payload), Metadata: md,
			Timestamp: t0.Add(time.Duration(i) * time.Minute),
		}
	}
	md := map[string]string{"correlation_id": "c-1", "user_id": "ada <admin>"}
	return [][]eventstore.Event{
		{ev(1, "user-1", "UserCreated", `{"name":"Ada"}`, md), ev(2, "user-1", "UserRenamed", `{"name": "Ada L."}`, md)},
		{ev(3, "order-1", "OrderPlaced", "{\n  \"total\": 12.5,\n  \"items\": [1, 2]\n}", nil)},
		{ev(4, "user-2", "UserCreated", `{"name":"Grace"}`, nil)},
		{ev(5, "user 3", "UserCreated", `{"name":"Ünïcødé \u00e9 MARKER-0123456789"}`, map[string]string{"k": "v\tw"})},
		{ev(6, "order-1", "OrderShipped", `"2024-05-02"`, nil)},
		{ev(7, "user-1", "UserDeleted", `null`, md)},
	}
}

// makeBolt writes a bolt store holding the fixture events and returns its
// path and the events as stored.
func makeBolt(t *testing.T) (string, []eventstore.Event) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	// Without the write-ahead log, whose pinned base keeps the pages of
	// earlier commits unused until a checkpoint: the damage tests take
	// the first copy of a record in the file for the live one.
	s, err := bolt.Open(path, &bolt.Options{NoWAL: true})
	require.NoError(t, err)
	events := appendFixture(t, s)
	require.NoError(t, s.Close())
	return path, events
}

func appendFixture(t *testing.T, s eventstore.Store) []eventstore.Event {
	t.Helper()
	var all []eventstore.Event
	for _, batch := range fixtureEvents() {
		stored, err := s.Append(context.Background(), batch...)
		require.NoError(t, err)
		all = append(all, stored...)
	}
	return all
}
