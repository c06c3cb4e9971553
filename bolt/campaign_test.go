package bolt_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

// The corruption campaign: TestCampaign damages copies of a store's file in
// every region bbolt has (metas, freelist, branch pages, leaf headers,
// element headers, values, whole pages zeroed or copied over others,
// truncations, an all-zero file) and runs Open, every read, Version, an
// Append and Check on each in a child process. It fails on a crash, a
// hang, or a read that returns a nil error with data that differ from the
// original file's, with one exception, which the bolt package doc states
// ("Damaged files"): bbolt's pages carry no checksum, and a damaged page
// can hide keys from a read and from every seek it makes to check itself
// (a lowered element count at the end of a range, a branch pointer to a
// stale but well-formed page). A read may then return fewer events with a
// nil error, so long as every event it returns is intact and Check reports
// the damage; and LoadSnapshot may find no snapshot (it is a cache).
// EVENTSTORE_CAMPAIGN_STRICT=1 fails on those too.
//
// EVENTSTORE_CAMPAIGN=N runs N copies (default 150); EVENTSTORE_CAMPAIGN_SEED
// picks another campaign (default 1); EVENTSTORE_CAMPAIGN_KIND=K damages
// every copy in one way (0 to 11, see mutate). A failure names the copy's
// mutation and keeps the damaged file (bbolt lays out pages differently
// from run to run, so a seed alone does not reproduce it): rerun that file
// alone with
//
//	EVENTSTORE_CAMPAIGN_FILE=path go test -run TestCampaignChild -v ./bolt/
const (
	campaignFileEnv = "EVENTSTORE_CAMPAIGN_FILE" // set in the child: the damaged copy
	campaignPrefix  = "campaign-result "
	campaignTimeout = 20 * time.Second
)

// opResult is what one call on a (damaged) store gave: its error, or a
// digest of its results.
type opResult struct {
	Op   string
	Err  string   `json:",omitempty"`
	N    int      // events (or the version) returned
	Sum  string   // digest of what was returned
	Sums []string `json:",omitempty"` // digest of each event returned
}

var campaignBase = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// campaignAggregates are the aggregates the reads look at.
var campaignAggregates = []string{"acct-0", "acct-7", "acct-23", "acct-39", "no-such"}

// eventDigests returns the digest of each event.
func eventDigests(events []eventstore.Event) []string {
	sums := make([]string, len(events))
	for i := range events {
		sums[i] = digest(events[i : i+1])
	}
	return sums
}

// digest sums events field by field.
func digest(events []eventstore.Event) string {
	h := sha256.New()
	for _, e := range events {
		fmt.Fprintf(h, "%q %q %q %d %d %d %q", e.ID, e.AggregateID, e.Type, e.Version, e.Position, e.Timestamp.UnixNano(), e.Payload)
		for _, k := range slices.Sorted(maps.Keys(e.Metadata)) {
			fmt.Fprintf(h, " %q=%q", k, e.Metadata[k])
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// campaignOps opens the file at path and runs every call on it, in order,
// passing each result to emit as it comes. It stops after a failed Open.
func campaignOps(path string, emit func(opResult)) []opResult {
	ctx := context.Background()
	var out []opResult
	add := func(op string, events []eventstore.Event, err error) {
		r := opResult{Op: op, N: len(events), Sum: digest(events)}
		if len(events) > 0 && events[0].ID != "" {
			r.Sums = eventDigests(events)
		}
		if err != nil {
			r.Err = err.Error()
		}
		out = append(out, r)
		if emit != nil {
			emit(r)
		}
	}
	s, err := bolt.Open(path, &bolt.Options{Timeout: time.Second, UnsafeNoSync: true})
	add("Open", nil, err)
	if err != nil {
		return out
	}
	for _, agg := range campaignAggregates {
		events, err := eventstore.Collect(s.ReadAggregate(ctx, agg, 0))
		add("ReadAggregate/"+agg, events, err)
		events, err = eventstore.Collect(s.ReadTime(ctx, agg, time.Time{}, time.Time{}))
		add("ReadTime/"+agg, events, err)
		v, err := s.Version(ctx, agg)
		add("Version/"+agg, make([]eventstore.Event, v), err)
	}
	events, err := eventstore.Collect(s.ReadAll(ctx, 0))
	add("ReadAll", events, err)
	events, err = eventstore.Collect(s.ReadAll(ctx, 1000))
	add("ReadAll/after1000", events, err)
	for _, typ := range []string{"Deposited", "Withdrawn", "Closed", "NoSuchType"} {
		events, err = eventstore.Collect(s.ReadType(ctx, typ, 0))
		add("ReadType/"+typ, events, err)
	}
	events, err = eventstore.Collect(s.ReadTime(ctx, "", time.Time{}, time.Time{}))
	add("ReadTime", events, err)
	events, err = eventstore.Collect(s.ReadTime(ctx, "", campaignBase.Add(500*time.Second), campaignBase.Add(900*time.Second)))
	add("ReadTime/window", events, err)
	for _, agg := range campaignAggregates {
		snap, err := s.LoadSnapshot(ctx, agg)
		var got []eventstore.Event // none: not found
		if err == nil {
			got = []eventstore.Event{{Payload: snap.State, Version: snap.Version, Type: snap.Schema}}
		} else if errors.Is(err, eventstore.ErrNotFound) {
			err = nil
		}
		add("LoadSnapshot/"+agg, got, err)
	}

	// Writes and the check come last: they may change the file.
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "acct-new", Type: "Opened", Payload: []byte(`{}`)})
	add("Append", nil, err)
	add("Check", nil, s.Check(ctx))
	add("Close", nil, s.Close())
	return out
}

// TestCampaignChild is the child process of TestCampaign.
func TestCampaignChild(t *testing.T) {
	path := os.Getenv(campaignFileEnv)
	if path == "" {
		t.Skip("run by TestCampaign")
	}
	campaignOps(path, func(r opResult) {
		b, _ := json.Marshal(r)
		fmt.Println(campaignPrefix + string(b))
	})
}

// buildCampaignStore writes the campaign's store: 1500 events over 40
// aggregates and 4 types with metadata, and snapshots, all from a fixed
// seed.
func buildCampaignStore(t *testing.T, path string) {
	ctx := context.Background()
	s, err := bolt.Open(path, &bolt.Options{UnsafeNoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	types := []string{"Deposited", "Withdrawn", "Deposited", "Closed"}
	for i := 0; i < 1500; {
		agg := fmt.Sprintf("acct-%d", rng.IntN(40))
		n := 1 + rng.IntN(8)
		batch := make([]eventstore.Event, n)
		for j := range batch {
			batch[j] = eventstore.Event{
				ID:          fmt.Sprintf("00000000-0000-7000-8000-%012d", i+j),
				AggregateID: agg,
				Type:        types[rng.IntN(len(types))],
				Payload:     []byte(fmt.Sprintf(`{"amount":%d,"note":%q}`, rng.IntN(10000), strings.Repeat("x", rng.IntN(200)))),
				// One key: a map's order, and so the file's bytes, would vary.
				Metadata:  map[string]string{"user_id": fmt.Sprintf("u%d", rng.IntN(5))},
				Timestamp: campaignBase.Add(time.Duration(i+j) * time.Second),
			}
		}
		if _, err := s.Append(ctx, batch...); err != nil {
			t.Fatal(err)
		}
		i += n
		if rng.IntN(20) == 0 {
			snap := eventstore.Snapshot{AggregateID: agg, Version: 1, Schema: "v1", State: bytes.Repeat([]byte{byte(i)}, 1+rng.IntN(5000)), Timestamp: campaignBase}
			if err := s.SaveSnapshot(ctx, snap); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// layout is what the campaign knows of the original file's pages.
type layout struct {
	pageSize int
	kinds    map[byte][]int // page type (flags) -> pages of that type
	count    map[int]int    // page -> element count
}

func readLayout(raw []byte) layout {
	l := layout{pageSize: int(binary.NativeEndian.Uint32(raw[16+8:])), kinds: map[byte][]int{}, count: map[int]int{}}
	for p := 2; (p+1)*l.pageSize <= len(raw); p++ {
		hdr := raw[p*l.pageSize:]
		flags := byte(binary.NativeEndian.Uint16(hdr[8:]))
		l.kinds[flags] = append(l.kinds[flags], p)
		l.count[p] = int(binary.NativeEndian.Uint16(hdr[10:]))
		p += int(binary.NativeEndian.Uint32(hdr[12:])) // skip overflow pages
	}
	return l
}

// inUse returns the pages that the freelist of raw's newest meta does not
// list as free.
func (l layout) inUse(raw []byte, pages []int) []int {
	meta := 0
	if binary.NativeEndian.Uint64(raw[l.pageSize+64:]) > binary.NativeEndian.Uint64(raw[64:]) {
		meta = 1
	}
	fl := int(binary.NativeEndian.Uint64(raw[meta*l.pageSize+48:]))
	hdr := raw[fl*l.pageSize:]
	count, ids := int(binary.NativeEndian.Uint16(hdr[10:])), hdr[16:]
	if count == 0xFFFF { // the count overflows into the first element
		count, ids = int(binary.NativeEndian.Uint64(ids)), ids[8:]
	}
	free := map[int]bool{}
	for i := range count {
		free[int(binary.NativeEndian.Uint64(ids[8*i:]))] = true
	}
	var used []int
	for _, p := range pages {
		if !free[p] {
			used = append(used, p)
		}
	}
	return used
}

// mutate returns a damaged copy of raw, and what was done to it.
func mutate(raw []byte, l layout, rng *rand.Rand, kind int) ([]byte, string) {
	b := bytes.Clone(raw)
	ps := l.pageSize
	pick := func(pages []int) int {
		if len(pages) == 0 {
			return 2
		}
		return pages[rng.IntN(len(pages))]
	}
	flip := func(off int) string {
		bit := rng.IntN(8)
		b[off] ^= 1 << bit
		return fmt.Sprintf("flip bit %d of byte %d (page %d +%d)", bit, off, off/ps, off%ps)
	}
	elems := func(p int) int { return max(1, min(l.count[p], (ps-16)/16)) }
	switch kind {
	case 0: // a meta's header or fields
		return b, "meta: " + flip(rng.IntN(2)*ps+rng.IntN(16+64))
	case 1: // both metas
		a := flip(rng.IntN(16 + 64))
		return b, "both metas: " + a + ", " + flip(ps+rng.IntN(16+64))
	case 2: // the freelist page(s)
		p := pick(l.kinds[0x10])
		return b, "freelist: " + flip(p*ps+rng.IntN(16+8*max(1, l.count[p])))
	case 3: // a branch page: header, elements or keys
		p := pick(l.kinds[0x01])
		return b, "branch: " + flip(p*ps+rng.IntN(16+elems(p)*16+64))
	case 4: // a leaf header
		return b, "leaf header: " + flip(pick(l.kinds[0x02])*ps+rng.IntN(16))
	case 5: // a leaf element header, often its high bytes
		p := pick(l.kinds[0x02])
		off := p*ps + 16 + rng.IntN(elems(p))*16 + rng.IntN(16)
		return b, "leaf element: " + flip(off)
	case 6: // a value: somewhere after the element headers
		p := pick(l.kinds[0x02])
		start := 16 + elems(p)*16
		return b, "leaf value: " + flip(p*ps+start+rng.IntN(max(1, ps-start)))
	case 7: // a zeroed page
		p := rng.IntN(len(b) / ps)
		clear(b[p*ps : (p+1)*ps])
		return b, fmt.Sprintf("zeroed page %d", p)
	case 8: // a page copied over another
		from, to := 2+rng.IntN(len(b)/ps-2), rng.IntN(len(b)/ps)
		copy(b[to*ps:(to+1)*ps], raw[from*ps:(from+1)*ps])
		return b, fmt.Sprintf("page %d copied over page %d", from, to)
	case 9: // a truncation
		n := []int{rng.IntN(ps), ps + rng.IntN(ps), rng.IntN(len(b)), len(b) - ps*(1+rng.IntN(4))}[rng.IntN(4)]
		return b[:max(n, 1)], fmt.Sprintf("truncated to %d bytes", max(n, 1))
	case 10: // all zeros
		return make([]byte, len(b)), "all zeros"
	default: // a few flips anywhere
		var what []string
		for range 1 + rng.IntN(8) {
			what = append(what, flip(rng.IntN(len(b))))
		}
		return b, "flips: " + strings.Join(what, ", ")
	}
}

const campaignKinds = 12

// TestCampaign runs the corruption campaign (see campaignFileEnv).
func TestCampaign(t *testing.T) {
	if os.Getenv(campaignFileEnv) != "" {
		t.Skip("in the campaign child")
	}
	n := 150
	if v := os.Getenv("EVENTSTORE_CAMPAIGN"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatalf("EVENTSTORE_CAMPAIGN=%q: %v", v, err)
		}
	}
	kind := -1 // every kind in turn
	if v := os.Getenv("EVENTSTORE_CAMPAIGN_KIND"); v != "" {
		var err error
		if kind, err = strconv.Atoi(v); err != nil || kind < 0 || kind >= campaignKinds {
			t.Fatalf("EVENTSTORE_CAMPAIGN_KIND=%q: want 0 to %d", v, campaignKinds-1)
		}
	}
	seed := uint64(1)
	if v := os.Getenv("EVENTSTORE_CAMPAIGN_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("EVENTSTORE_CAMPAIGN_SEED=%q: %v", v, err)
		}
		seed = s
	}

	dir := t.TempDir()
	original := filepath.Join(dir, "original.db")
	start := time.Now()
	buildCampaignStore(t, original)
	t.Logf("built the store in %v", time.Since(start).Round(time.Millisecond))
	raw, err := os.ReadFile(original)
	if err != nil {
		t.Fatal(err)
	}
	l := readLayout(raw)

	// What an undamaged copy gives.
	pristine := filepath.Join(dir, "pristine.db")
	if err := os.WriteFile(pristine, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	want := map[string]opResult{}
	for _, r := range campaignOps(pristine, nil) {
		if r.Err != "" {
			t.Fatalf("undamaged copy: %s: %s", r.Op, r.Err)
		}
		want[r.Op] = r
	}
	// With the newer meta page damaged, bbolt reads the file as of the
	// transaction before, which it keeps intact for that purpose: its
	// results are right too.
	previous := bytes.Clone(raw)
	newer := 0
	if binary.NativeEndian.Uint64(raw[l.pageSize+16+48:]) > binary.NativeEndian.Uint64(raw[16+48:]) {
		newer = 1
	}
	previous[newer*l.pageSize+16+56] ^= 0xff // its checksum
	if err := os.WriteFile(pristine, previous, 0o600); err != nil {
		t.Fatal(err)
	}
	wantPrevious := map[string]opResult{}
	for _, r := range campaignOps(pristine, nil) {
		if r.Err != "" {
			t.Fatalf("copy as of the previous transaction: %s: %s", r.Op, r.Err)
		}
		wantPrevious[r.Op] = r
	}
	// The events a damaged copy may return: those of either transaction.
	originals := map[string]bool{}
	for _, sum := range append(want["ReadAll"].Sums, wantPrevious["ReadAll"].Sums...) {
		originals[sum] = true
	}
	strict := os.Getenv("EVENTSTORE_CAMPAIGN_STRICT") != ""
	t.Logf("campaign seed %d: %d copies of a %d-byte file (page size %d, %d branch, %d leaf pages)",
		seed, n, len(raw), l.pageSize, len(l.kinds[0x01]), len(l.kinds[0x02]))

	start = time.Now()
	var mu sync.Mutex
	stats := map[string]int{}
	sem := make(chan struct{}, 2) // the machine is shared
	var wg sync.WaitGroup
	for i := range n {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		k := kind
		if k < 0 {
			k = i % campaignKinds
		}
		damaged, what := mutate(raw, l, rng, k)
		what = fmt.Sprintf("copy %d (seed %d): %s", i, seed, what)
		path := filepath.Join(dir, fmt.Sprintf("copy-%d.db", i))
		if err := os.WriteFile(path, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results, failure := runCampaignChild(path)
			mu.Lock()
			defer mu.Unlock()
			failed := false
			checkFailed := false
			for _, r := range results {
				checkFailed = checkFailed || r.Op == "Check" && r.Err != ""
			}
			defer func() {
				if failed {
					t.Logf("kept %s", keep(t, path))
				} else {
					os.Remove(path)
				}
			}()
			if failure != "" {
				t.Errorf("%s: %s", what, failure)
				failed = true
				return
			}
			for _, r := range results {
				w, ok := want[r.Op]
				if p := wantPrevious[r.Op]; r.N == p.N && r.Sum == p.Sum {
					w = p
				}
				switch {
				case !ok:
					t.Errorf("%s: unknown op %s", what, r.Op)
				case r.Err != "":
					stats[r.Op+" error"]++
				case r.Op == "Append" || r.Op == "Check" || r.Op == "Close" || r.N == w.N && r.Sum == w.Sum:
					stats[r.Op+" ok"]++
				case !strict && lostOnly(r, w, originals) && (checkFailed || strings.HasPrefix(r.Op, "LoadSnapshot/")):
					// What bbolt's unchecked pages can hide from a read and
					// from its own checks (see "Damaged files" in the
					// package doc): fewer events, every one of them intact,
					// in a file whose damage Check reports; or a snapshot,
					// a cache, not found.
					stats["lost, caught by Check"]++
					t.Logf("lost without an error, as documented: %s: %s returned %d of %d", what, r.Op, r.N, w.N)
				default:
					t.Errorf("WRONG DATA: %s: %s returned %d results (digest %s) with a nil error; the original gives %d (digest %s); only lost intact events: %v; Check failed: %v",
						what, r.Op, r.N, r.Sum, w.N, w.Sum, lostOnly(r, w, originals), checkFailed)
					failed = true
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("ran the copies in %v", time.Since(start).Round(time.Millisecond))
	for _, k := range slices.Sorted(maps.Keys(stats)) {
		if strings.HasPrefix(k, "Open") || strings.HasPrefix(k, "Check") || strings.HasPrefix(k, "ReadAll ") || strings.HasPrefix(k, "Append") || strings.HasPrefix(k, "lost") {
			t.Logf("%-20s %d", k, stats[k])
		}
	}
}

// lostOnly reports whether r, a result that differs from w, only lost
// something: fewer events (or a lower version, or no snapshot), and every
// event it has is one of the original file's.
func lostOnly(r, w opResult, originals map[string]bool) bool {
	if r.N >= w.N {
		return false
	}
	if strings.HasPrefix(r.Op, "Version/") || strings.HasPrefix(r.Op, "LoadSnapshot/") {
		return r.N == 0 || strings.HasPrefix(r.Op, "Version/")
	}
	if len(r.Sums) != r.N {
		return false
	}
	for _, sum := range r.Sums {
		if !originals[sum] {
			return false
		}
	}
	return true
}

// runCampaignChild runs TestCampaignChild on the file at path and returns
// its results, or why it failed: a crash, a hang, or garbled output.
func runCampaignChild(path string) ([]opResult, string) {
	ctx, cancel := context.WithTimeout(context.Background(), campaignTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCampaignChild$", "-test.count=1", "-test.v=false")
	// The race detector sleeps a second at exit unless told not to.
	cmd.Env = append(os.Environ(), campaignFileEnv+"="+path, "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Sprintf("HANG: killed after %v; output so far:\n%s", campaignTimeout, stdout.String())
	}
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return nil, fmt.Sprintf("CRASH: %v\n%s%s", err, tail(stdout.String(), 2000), head(stderr.String(), 3000))
		}
		return nil, fmt.Sprintf("could not run the child: %v", err)
	}
	var results []opResult
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), campaignPrefix)
		if !ok {
			continue
		}
		var r opResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Sprintf("bad result line %q: %v", line, err)
		}
		results = append(results, r)
	}
	if len(results) == 0 {
		return nil, "no results:\n" + tail(stdout.String(), 2000)
	}
	return results, ""
}

// keep moves a damaged copy that failed out of the test's directory, and
// returns its new path.
func keep(t *testing.T, path string) string {
	dir := filepath.Join(os.TempDir(), "eventstore-campaign-failures")
	kept := filepath.Join(dir, fmt.Sprintf("%d-%s", time.Now().UnixNano(), filepath.Base(path)))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Log(err)
		return path
	}
	raw, err := os.ReadFile(path)
	if err == nil {
		err = os.WriteFile(kept, raw, 0o600)
	}
	if err != nil {
		t.Log(err)
		return path
	}
	return kept
}

func head(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// TestCheck_DamagedElementsInChild points an element of a leaf page far
// outside its page, which made bbolt's tx.Check (in a goroutine of its
// own) fault and kill the process: Check must report ErrCorrupt instead.
// It runs in a child process, since the failure it guards against is a
// crash.
func TestCheck_DamagedElementsInChild(t *testing.T) {
	if os.Getenv(campaignFileEnv) != "" {
		t.Skip("in the campaign child")
	}
	path := filepath.Join(t.TempDir(), "events.db")
	buildCampaignStore(t, path)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := readLayout(raw)
	// The high byte of the pos of the last element of a leaf in the middle
	// of those in use: damage to a free page is no damage.
	used := l.inUse(raw, l.kinds[0x02])
	p := used[len(used)/2]
	raw[p*l.pageSize+16+(l.count[p]-1)*16+4+3] ^= 0x20
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	results, failure := runCampaignChild(path)
	if failure != "" {
		t.Fatal(failure)
	}
	checked := false
	for _, r := range results {
		t.Logf("%s: %s", r.Op, r.Err)
		if r.Op == "Check" {
			checked = true
			if !strings.Contains(r.Err, eventstore.ErrCorrupt.Error()) {
				t.Errorf("Check: got %q, want ErrCorrupt", r.Err)
			}
		}
	}
	if !checked {
		t.Fatal("the child did not get as far as Check")
	}
}
