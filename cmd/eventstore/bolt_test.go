package main

import (
	"bytes"
	"compress/gzip"
	be "encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
	bbolt "go.etcd.io/bbolt"
)

func TestStats_Bolt(t *testing.T) {
	path, _ := makeBolt(t)
	out := ok(t, "stats", path)
	for _, want := range []string{
		"events:           7", "aggregates:       4", "types:            5", "head position:    7",
		"first timestamp:  2024-05-01T12:01:00.123456Z", "last timestamp:   2024-05-01T12:07:00.123456Z",
		"format:           eventstore/bolt ", "TYPE          EVENTS\nOrderPlaced   1\nOrderShipped  1\nUserCreated   3\n",
	} {
		require.Contains(t, out, want)
	}

	objs := jsonLines(t, ok(t, "stats", "--json", path))
	require.Len(t, objs, 1)
	st := objs[0]
	require.EqualValues(t, 7, st["events"])
	require.EqualValues(t, 4, st["aggregates"])
	require.EqualValues(t, 7, st["head"])
	require.Equal(t, "bolt", st["backend"])
	require.Regexp(t, `^eventstore/bolt [0-9]+$`, st["format"])
	require.Equal(t, "2024-05-01T12:01:00.123456Z", st["first_timestamp"])
	require.Equal(t, "2024-05-01T12:07:00.123456Z", st["last_timestamp"])
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.EqualValues(t, fi.Size(), st["size_bytes"])
	require.Equal(t, []any{
		map[string]any{"type": "OrderPlaced", "events": 1.0},
		map[string]any{"type": "OrderShipped", "events": 1.0},
		map[string]any{"type": "UserCreated", "events": 3.0},
		map[string]any{"type": "UserDeleted", "events": 1.0},
		map[string]any{"type": "UserRenamed", "events": 1.0},
	}, st["types"])
}

func TestAggregates_Bolt(t *testing.T) {
	path, _ := makeBolt(t)
	out := ok(t, "aggregates", path)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 5)
	require.Regexp(t, `^AGGREGATE\s+VERSION\s+LAST TIMESTAMP$`, lines[0])
	require.Regexp(t, `^order-1\s+2\s+2024-05-01T12:06:00.123456Z$`, lines[1])
	require.Regexp(t, `^"user 3"\s+1\s+2024-05-01T12:05:00.123456Z$`, lines[2])
	require.Regexp(t, `^user-1\s+3\s+2024-05-01T12:07:00.123456Z$`, lines[3])
	require.Regexp(t, `^user-2\s+1\s+2024-05-01T12:04:00.123456Z$`, lines[4])

	objs := jsonLines(t, ok(t, "aggregates", "--json", "--prefix", "user", path))
	require.Equal(t, []map[string]any{
		{"aggregate_id": "user 3", "version": 1.0, "last_timestamp": "2024-05-01T12:05:00.123456Z"},
		{"aggregate_id": "user-1", "version": 3.0, "last_timestamp": "2024-05-01T12:07:00.123456Z"},
		{"aggregate_id": "user-2", "version": 1.0, "last_timestamp": "2024-05-01T12:04:00.123456Z"},
	}, objs)

	// Pages.
	r := cli(t, "aggregates", "--json", "--limit", "2", path)
	require.Equal(t, 0, r.code)
	require.Equal(t, []string{"order-1", "user 3"}, ids(jsonLines(t, r.stdout)))
	require.Contains(t, r.stderr, `--after "user 3"`)
	r = cli(t, "aggregates", "--json", "--limit", "2", "--after", "user 3", path)
	require.Equal(t, []string{"user-1", "user-2"}, ids(jsonLines(t, r.stdout)))
	require.Empty(t, r.stderr)
}

func ids(objs []map[string]any) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o["aggregate_id"].(string))
	}
	return out
}

func positions(objs []map[string]any) []int {
	var out []int
	for _, o := range objs {
		out = append(out, int(o["position"].(float64)))
	}
	return out
}

func TestCat_Bolt(t *testing.T) {
	path, events := makeBolt(t)
	objs := jsonLines(t, ok(t, "cat", "--json", path, "user-1"))
	require.Equal(t, []int{1, 2, 7}, positions(objs))
	require.Equal(t, events[0].ID, objs[0]["id"])
	require.Equal(t, map[string]any{"correlation_id": "c-1", "user_id": "ada <admin>"}, objs[0]["metadata"])
	require.Equal(t, map[string]any{"name": "Ada"}, objs[0]["payload"])

	require.Equal(t, []int{7}, positions(jsonLines(t, ok(t, "cat", "--json", "--after-version", "2", path, "user-1"))))
	require.Equal(t, []int{1, 2}, positions(jsonLines(t, ok(t, "cat", "--json", "--as-of", "2024-05-01T12:02:00.123456Z", path, "user-1"))))
	require.Empty(t, jsonLines(t, ok(t, "cat", "--json", path, "nobody")))

	out := ok(t, "cat", path, "order-1")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3)
	require.Regexp(t, `^POSITION\s+TIMESTAMP\s+AGGREGATE\s+VERSION\s+TYPE\s+PAYLOAD$`, lines[0])
	require.Regexp(t, `^3\s+2024-05-01T12:03:00.123456Z\s+order-1\s+1\s+OrderPlaced\s+\{"total":12.5,"items":\[1,2\]\}$`, lines[1])

	pretty := ok(t, "cat", "--pretty", path, "order-1")
	require.Contains(t, pretty, "position 3  2024-05-01T12:03:00.123456Z  order-1  version 1  OrderPlaced")
	require.Contains(t, pretty, "\n  {\n    \"total\": 12.5,")

	r := cli(t, "cat", "--as-of", "yesterday", path, "user-1")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "--as-of")
}

func TestLog_Bolt(t *testing.T) {
	path, _ := makeBolt(t)
	log := func(args ...string) []int {
		t.Helper()
		return positions(jsonLines(t, ok(t, append(append([]string{"log", "--json"}, args...), path)...)))
	}
	require.Equal(t, []int{1, 2, 3, 4, 5, 6, 7}, log())
	require.Equal(t, []int{4, 5, 6, 7}, log("--after", "3"))
	require.Equal(t, []int{1, 4, 5}, log("--type", "UserCreated"))
	require.Equal(t, []int{3, 4, 5, 6}, log("--type", "UserCreated", "--type", "OrderPlaced", "--type", "OrderShipped", "--after", "2"))
	require.Equal(t, []int{3, 6}, log("--prefix", "order-"))
	require.Equal(t, []int{2, 3}, log("--since", "2024-05-01T12:02:00.123456Z", "--until", "2024-05-01T12:04:00.123456Z"))
	require.Equal(t, []int{1, 2}, log("-n", "2"))
	require.Equal(t, []int{4, 5}, log("--type", "UserCreated", "--after", "1", "-n", "2"))
	require.Empty(t, log("--since", "2025-01-01"))

	out := ok(t, "log", path)
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 8)
	require.Contains(t, out, `"user 3"`)
}

func TestTail_Bolt(t *testing.T) {
	path, _ := makeBolt(t)
	require.Equal(t, []int{5, 6, 7}, positions(jsonLines(t, ok(t, "tail", "--json", "-n", "3", path))))
	require.Equal(t, []int{1, 2, 3, 4, 5, 6, 7}, positions(jsonLines(t, ok(t, "tail", "--json", path))))
	out := ok(t, "tail", "-n", "1", path)
	require.Regexp(t, `\n7\s+2024-05-01T12:07:00.123456Z\s+user-1\s+3\s+UserDeleted\s+null\n$`, out)

	r := cli(t, "tail", "-f", path)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "PostgreSQL")
}

func TestExport_Bolt(t *testing.T) {
	path, events := makeBolt(t)
	out := ok(t, "export", path)
	lines := strings.Split(out, "\n")
	require.Len(t, lines, 9) // header, 7 events, ""
	require.Regexp(t, `^\{"format":"eventstore-ndjson","version":1,"head":7,"created":"[0-9T:.-]+Z"\}$`, lines[0])
	// Every field, the payload byte for byte.
	require.Equal(t, `{"id":"0190a1b2-c3d4-7e5f-8a9b-000000000002","aggregate_id":"user-1","type":"UserRenamed","version":2,"position":2,"timestamp":"2024-05-01T12:02:00.123456Z","metadata":{"correlation_id":"c-1","user_id":"ada <admin>"},"payload":{"name": "Ada L."}}`, lines[2])
	require.Equal(t, `{"id":"0190a1b2-c3d4-7e5f-8a9b-000000000003","aggregate_id":"order-1","type":"OrderPlaced","version":1,"position":3,"timestamp":"2024-05-01T12:03:00.123456Z","payload_text":"{\n  \"total\": 12.5,\n  \"items\": [1, 2]\n}"}`, lines[3])
	for i, e := range events {
		got, err := decodeEvent([]byte(lines[i+1]))
		require.NoError(t, err)
		require.Equal(t, e, got)
	}

	// To a file, gzipped by its name; stdout stays empty.
	gz := filepath.Join(t.TempDir(), "events.ndjson.gz")
	require.Empty(t, ok(t, "export", "-o", gz, path))
	f, err := os.Open(gz)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	unzipped, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.Equal(t, lines[1:], strings.Split(string(unzipped), "\n")[1:])
	entries, err := os.ReadDir(filepath.Dir(gz))
	require.NoError(t, err)
	require.Len(t, entries, 1, "a temporary file was left behind")
}

func TestVerify_Bolt(t *testing.T) {
	path, _ := makeBolt(t)
	require.Equal(t, path+": ok\n", ok(t, "verify", path))
	require.Equal(t, []map[string]any{{"store": path, "ok": true, "problems": []any{}}}, jsonLines(t, ok(t, "verify", "--json", path)))

	// Damage one record: its checksum fails.
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	i := bytes.Index(raw, []byte("MARKER-0123456789"))
	require.Positive(t, i)
	raw[i+7] ^= 0x01
	require.NoError(t, os.WriteFile(path, raw, 0o600))

	r := cli(t, "verify", path)
	require.Equal(t, 1, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	require.Contains(t, r.stdout, path+": 1 problem(s):\n  - ")
	require.Contains(t, r.stdout, "data corrupt")
	require.Contains(t, r.stderr, "1 problem found")

	r = cli(t, "verify", "--json", path)
	require.Equal(t, 1, r.code)
	objs := jsonLines(t, r.stdout)
	require.Len(t, objs, 1)
	require.Equal(t, false, objs[0]["ok"])
	require.Len(t, objs[0]["problems"], 1)

	// Reads that meet the damage fail with a message, exit status 2.
	r = cli(t, "cat", path, "user 3")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "data corrupt")
}

// TestVerify_BoltDamagedPages damages the file's structure: the meta pages
// (the file no longer opens) and, in another copy, every page after them.
func TestVerify_BoltDamagedPages(t *testing.T) {
	path, _ := makeBolt(t)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	pageSize := os.Getpagesize()
	for name, damage := range map[string]func(b []byte){
		"metas": func(b []byte) { clear(b[16:64]); clear(b[pageSize+16 : pageSize+64]) },
		"leaf":  func(b []byte) { p := bytes.Index(b, []byte("MARKER-")) / pageSize * pageSize; clear(b[p : p+pageSize]) },
		"cut":   func(b []byte) {},
	} {
		t.Run(name, func(t *testing.T) {
			b := bytes.Clone(raw)
			damage(b)
			if name == "cut" {
				b = b[:len(b)/2]
			}
			p := filepath.Join(t.TempDir(), "damaged.db")
			require.NoError(t, os.WriteFile(p, b, 0o600))
			r := cli(t, "verify", p)
			require.Equal(t, 1, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
			require.Contains(t, r.stdout, "problem(s):")
		})
	}
}

func TestLocked_Bolt(t *testing.T) {
	path, _ := makeBolt(t)
	s, err := bolt.Open(path, nil) // the "application"
	require.NoError(t, err)
	defer s.Close()
	for _, args := range [][]string{{"stats", path}, {"verify", path}, {"export", path}, {"backup", path, path + ".bak"}} {
		r := cli(t, append(args, "--timeout", "100ms")...)
		require.Equal(t, 2, r.code, "%v", args)
		require.Contains(t, r.stderr, "eventstore: "+path+" is locked: another process (your application?) has it open for writing.")
		require.Contains(t, r.stderr, "(*bolt.Store).Backup")
		require.NotContains(t, r.stderr, "bolt: open")
		require.Empty(t, r.stdout)
	}
	require.NoError(t, s.Close())

	// Readers share the file: a read-only store held here does not stop
	// the command.
	ro, err := bolt.Open(path, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	require.Contains(t, ok(t, "stats", "--timeout", "100ms", path), "events:")
}

func TestReadOnly_Bolt(t *testing.T) {
	path, _ := makeBolt(t)
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, args := range [][]string{{"stats", path}, {"aggregates", path}, {"log", path}, {"cat", path, "user-1"}, {"tail", path}, {"export", path}, {"verify", path}} {
		ok(t, args...)
	}
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after, "a read-only command changed the file")

	missing := filepath.Join(t.TempDir(), "missing.db")
	r := cli(t, "stats", missing)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "no such file")
	_, err = os.Stat(missing)
	require.True(t, os.IsNotExist(err), "stats created the file")
}

func TestBackup_Bolt(t *testing.T) {
	path, events := makeBolt(t)
	dst := filepath.Join(t.TempDir(), "backup.db")
	r := cli(t, "backup", path, dst)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, "checked")
	require.Equal(t, events, readAll(t, dst))

	dst2 := filepath.Join(t.TempDir(), "backup2.db")
	objs := jsonLines(t, ok(t, "backup", "--json", path, dst2))
	fi, err := os.Stat(dst2)
	require.NoError(t, err)
	require.Equal(t, []map[string]any{{"store": path, "backup": dst2, "bytes": float64(fi.Size())}}, objs)

	r = cli(t, "backup", "postgres://localhost/x", dst)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "pg_dump")
}

func TestCompact_Bolt(t *testing.T) {
	path, events := makeBolt(t)
	// Grow and shrink: snapshots written and deleted leave free pages.
	s, err := bolt.Open(path, &bolt.Options{UnsafeNoSync: true})
	require.NoError(t, err)
	big := bytes.Repeat([]byte("x"), 64<<10)
	for i := range 50 {
		require.NoError(t, s.SaveSnapshot(t.Context(), eventstore.Snapshot{AggregateID: "user-1", Version: uint64(i + 1), State: big}))
	}
	require.NoError(t, s.DeleteSnapshot(t.Context(), "user-1"))
	require.NoError(t, s.Close())

	dst := filepath.Join(t.TempDir(), "compact.db")
	out := ok(t, "compact", path, dst)
	require.Contains(t, out, "compacted to "+dst)
	src, err := os.Stat(path)
	require.NoError(t, err)
	fi, err := os.Stat(dst)
	require.NoError(t, err)
	require.Less(t, fi.Size(), src.Size())
	require.Equal(t, events, readAll(t, dst))

	r := cli(t, "compact", path, dst)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "exists")
	objs := jsonLines(t, ok(t, "compact", "--json", path, dst+"2"))
	require.EqualValues(t, fi.Size(), objs[0]["dst_bytes"])
}

// TestCompact_UpgradesFormat: compacting a file of format 2, whose records
// hold UUID metadata values as text, writes one of format 3 with those
// values in their 16-byte form, and leaves the source alone.
func TestCompact_UpgradesFormat(t *testing.T) {
	path, events := makeBolt(t)
	s, err := bolt.Open(path, nil)
	require.NoError(t, err)
	added, err := s.Append(t.Context(), eventstore.Event{AggregateID: "user-1", Type: "UserRenamed", Payload: []byte(`{}`),
		Metadata: map[string]string{"correlation_id": "0190a7e2-3c4d-7e8f-9a0b-1c2d3e4f5a6b"}})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	events = append(events, added...)

	// Format 2 wrote the value as a str: 0xd9 36 and its text, where
	// format 3 writes 0xd8 1 and its 16 bytes. Rewrite the record so and
	// seal it again (CRC32C of what follows the 5-byte checksum).
	ext := []byte{0xd8, 1, 0x01, 0x90, 0xa7, 0xe2, 0x3c, 0x4d, 0x7e, 0x8f, 0x9a, 0x0b, 0x1c, 0x2d, 0x3e, 0x4f, 0x5a, 0x6b}
	str := append([]byte{0xd9, 36}, "0190a7e2-3c4d-7e8f-9a0b-1c2d3e4f5a6b"...)
	var key []byte
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("events"))
		var old []byte
		require.NoError(t, b.ForEach(func(k, v []byte) error {
			if bytes.Contains(v, ext) {
				key, old = bytes.Clone(k), bytes.Clone(v)
			}
			return nil
		}))
		require.NotNil(t, key, "no record holds the UUID in its 16-byte form")
		rec := bytes.Replace(old, ext, str, 1)
		be.BigEndian.PutUint32(rec[1:], crc32.Checksum(rec[5:], crc32.MakeTable(crc32.Castagnoli)))
		if err := b.Put(key, rec); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("format"), []byte("eventstore/bolt 2"))
	}))
	require.NoError(t, db.Close())
	require.Equal(t, events, readAll(t, path), "the format 2 record reads")

	dst := filepath.Join(t.TempDir(), "compact.db")
	ok(t, "compact", path, dst)
	st := jsonLines(t, ok(t, "stats", "--json", dst))
	require.Equal(t, "eventstore/bolt 3", st[0]["format"])
	st = jsonLines(t, ok(t, "stats", "--json", path))
	require.Equal(t, "eventstore/bolt 2", st[0]["format"], "compact changed its source")
	require.Equal(t, events, readAll(t, dst))
	db, err = bbolt.Open(dst, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		require.True(t, bytes.Contains(tx.Bucket([]byte("events")).Get(key), ext), "compact left the record as it was")
		return nil
	}))
}

// TestCompact_KeepsPageSize compacts a file made with 8 KiB pages: the
// copy has 8 KiB pages too, not bbolt's default.
func TestCompact_KeepsPageSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := bolt.Open(path, &bolt.Options{NoWAL: true, PageSize: 8192})
	require.NoError(t, err)
	events := appendFixture(t, s)
	require.NoError(t, s.Close())

	dst := filepath.Join(t.TempDir(), "compact.db")
	ok(t, "compact", path, dst)
	db, err := bbolt.Open(dst, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	require.Equal(t, 8192, db.Info().PageSize)
	require.NoError(t, db.Close())
	require.Equal(t, events, readAll(t, dst))
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"stats"}, {"stats", "a", "b"}, {"nosuch"}, {"stats", "--nosuch", "x"}, {"log", "-n", "x", "f"}} {
		r := cli(t, args...)
		if len(args) == 0 {
			require.Equal(t, 0, r.code) // help
			require.Contains(t, r.stdout, "Available Commands")
			continue
		}
		require.Equal(t, 2, r.code, "%v: %+v", args, r)
		require.True(t, strings.HasPrefix(r.stderr, "eventstore: "), r.stderr)
	}
	help := ok(t, "export", "--help")
	require.Contains(t, help, `{"format":"eventstore-ndjson","version":1`)
}

// TestProgress_Terminal runs export with stderr on a terminal (a pty made
// by script(1)): it draws a progress bar there, which every other test,
// whose stderr is a pipe, never sees.
func TestProgress_Terminal(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("SKIPPING: script(1) (util-linux) is not installed, so no pty to test the progress bar on")
	}
	path, _ := makeBolt(t)
	out := filepath.Join(t.TempDir(), "x.ndjson")
	cmd := exec.Command(script, "-qec", binary+" export -o "+out+" "+path, "/dev/null")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, string(b))
	require.Contains(t, string(b), "export")
	require.Contains(t, string(b), "/7, ") // events done of the head
	require.Contains(t, string(b), "events/s")
}
