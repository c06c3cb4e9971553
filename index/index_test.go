package index_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore/index"
)

func FuzzEvent(f *testing.F) {
	f.Add("a", uint64(1), "ab", uint64(0))
	f.Add("a", uint64(1<<63), "a/b", uint64(1))
	f.Add("a/b", uint64(255), "a", uint64(256))
	f.Add("", uint64(0), "\x00", uint64(0))
	f.Add("a\x00\x00\x00\x00\x00\x00\x00\x00\x01", uint64(7), "a", uint64(1))
	f.Add("\xff\xff", ^uint64(0), "\xff", ^uint64(0))
	f.Fuzz(func(t *testing.T, a1 string, v1 uint64, a2 string, v2 uint64) {
		k1 := index.Event(a1, v1)

		// Round trip.
		got, v, err := index.ParseEvent(k1)
		if err != nil || string(got) != a1 || v != v1 {
			t.Fatalf("ParseEvent(Event(%q, %d)) = %q, %d, %v", a1, v1, got, v, err)
		}

		// Keys of one aggregate sort by version.
		if c, k := cmp(v1, v2), bytes.Compare(k1, index.Event(a1, v2)); c != k {
			t.Fatalf("versions %d, %d of %q compare %d, keys %d", v1, v2, a1, c, k)
		}

		// No key of one aggregate falls inside another's range: it neither
		// has the other's prefix nor sorts between two of the other's keys.
		if a1 != a2 {
			p2 := index.AggregatePrefix(a2)
			if bytes.HasPrefix(k1, p2) || index.IsEventOf(k1, p2) {
				t.Fatalf("key of %q %x has prefix of %q %x", a1, k1, a2, p2)
			}
			lo, hi := index.Event(a2, 0), index.Event(a2, ^uint64(0))
			if bytes.Compare(lo, k1) <= 0 && bytes.Compare(k1, hi) <= 0 {
				t.Fatalf("key of %q %x inside the range of %q", a1, k1, a2)
			}
		} else if !index.IsEventOf(k1, index.AggregatePrefix(a2)) {
			t.Fatalf("key %x not recognised as one of %q", k1, a2)
		}

		// Types share the shape.
		tk := index.Type(a1, v1)
		ty, pos, err := index.ParseType(tk)
		if err != nil || string(ty) != a1 || pos != v1 {
			t.Fatalf("ParseType(Type(%q, %d)) = %q, %d, %v", a1, v1, ty, pos, err)
		}
		if !bytes.HasPrefix(tk, index.TypePrefix(a1)) {
			t.Fatalf("type key %x lacks its prefix", tk)
		}
	})
}

func FuzzParseEvent(f *testing.F) {
	f.Add([]byte{0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, key []byte) {
		// Never panics; what parses re-encodes to the same bytes.
		agg, v, err := index.ParseEvent(key)
		if err != nil {
			return
		}
		if got := index.Event(string(agg), v); !bytes.Equal(got, key) {
			t.Fatalf("Event(ParseEvent(%x)) = %x", key, got)
		}
	})
}

func FuzzPosition(f *testing.F) {
	f.Add(uint64(0), uint64(1))
	f.Add(uint64(255), uint64(256))
	f.Add(^uint64(0), uint64(1<<63))
	f.Fuzz(func(t *testing.T, p1, p2 uint64) {
		k1, k2 := index.Position(p1), index.Position(p2)
		if got, err := index.ParsePosition(k1); err != nil || got != p1 {
			t.Fatalf("ParsePosition(Position(%d)) = %d, %v", p1, got, err)
		}
		if c, k := cmp(p1, p2), bytes.Compare(k1, k2); c != k {
			t.Fatalf("positions %d, %d compare %d, keys %d", p1, p2, c, k)
		}
	})
}

func FuzzTime(f *testing.F) {
	first := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	last := time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()
	f.Add(first, uint64(1), last, uint64(2))
	f.Add(int64(-1), uint64(5), int64(0), uint64(4))
	f.Add(int64(0), uint64(5), int64(0), uint64(4))
	f.Add(int64(1), uint64(1), int64(-1), uint64(1))
	f.Fuzz(func(t *testing.T, us1 int64, p1 uint64, us2 int64, p2 uint64) {
		// Keep to the years 1 to 9999, the range stores accept.
		clamp := func(us int64) int64 { return min(max(us, first), last) }
		us1, us2 = clamp(us1), clamp(us2)
		t1, t2 := time.UnixMicro(us1).UTC(), time.UnixMicro(us2).UTC()
		k1, k2 := index.Time(t1, p1), index.Time(t2, p2)
		got, pos, err := index.ParseTime(k1)
		if err != nil || !got.Equal(t1) || pos != p1 || got.Location() != time.UTC {
			t.Fatalf("ParseTime(Time(%v, %d)) = %v, %d, %v", t1, p1, got, pos, err)
		}
		want := cmp(us1, us2)
		if want == 0 {
			want = cmp(p1, p2)
		}
		if k := bytes.Compare(k1, k2); k != want {
			t.Fatalf("(%v,%d) vs (%v,%d): want %d, keys compare %d", t1, p1, t2, p2, want, k)
		}
	})
}

func FuzzID(f *testing.F) {
	f.Add("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
	f.Add("not a uuid")
	f.Fuzz(func(t *testing.T, id string) {
		k, err := index.ID(id)
		if err != nil {
			return
		}
		if len(k) != index.IDSize {
			t.Fatalf("ID(%q) has %d bytes", id, len(k))
		}
	})
}

func cmp[T int64 | uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
