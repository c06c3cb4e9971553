package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/index"
)

// testMeta returns a valid bbolt meta page (header and meta) of txid.
func testMeta(txid uint64) [walMetaSize]byte {
	var m [walMetaSize]byte
	b := m[pageHeaderSize:]
	hostOrder.PutUint16(m[8:], flagMeta)
	hostOrder.PutUint32(b[0:], metaMagic)
	hostOrder.PutUint32(b[4:], metaVersion)
	hostOrder.PutUint32(b[8:], 4096)
	hostOrder.PutUint64(b[16:], 3)  // root
	hostOrder.PutUint64(b[32:], 2)  // freelist
	hostOrder.PutUint64(b[40:], 10) // pgid
	hostOrder.PutUint64(b[48:], txid)
	h := fnv.New64a()
	h.Write(b[:56])
	hostOrder.PutUint64(b[56:], h.Sum64())
	return m
}

// testLog builds a log: the header of gen in slot, the other slot empty,
// then a record per payload. It returns the log and the offsets where its
// records end.
func testLog(gen uint64, slot int, payloads ...[]byte) ([]byte, []int) {
	data := make([]byte, walRecordsStart)
	h := walHeader{gen: gen, meta: testMeta(gen + 100)}
	copy(data[slot*walSlotSize:], appendWalHeader(nil, &h))
	var ends []int
	for _, p := range payloads {
		data = appendWalRecord(data, gen, p)
		ends = append(ends, len(data))
	}
	return data, ends
}

// testPayload is the payload of a record holding n events from position
// first on.
func testPayload(first uint64, n int) []byte {
	var p []byte
	for i := range n {
		e := eventstore.Event{
			ID:          fmt.Sprintf("01890000-0000-7000-8000-%012d", first+uint64(i)),
			AggregateID: "agg",
			Type:        "T",
			Version:     first + uint64(i),
			Position:    first + uint64(i),
			Timestamp:   time.UnixMicro(1_700_000_000_000_000 + int64(first)),
			Payload:     bytes.Repeat([]byte{'x'}, int(first)%50),
		}
		id, err := index.ID(e.ID)
		if err != nil {
			panic(err)
		}
		p = appendWalEvent(p, appendEventRecord(nil, &e, id))
	}
	return p
}

func TestWal_RoundTrip(t *testing.T) {
	payloads := [][]byte{testPayload(1, 1), testPayload(2, 3), {}, testPayload(5, 2)}
	for slot := range 2 {
		data, ends := testLog(7, slot, payloads...)
		h, got, end, err := decodeWal(data)
		require.NoError(t, err)
		require.Equal(t, uint64(7), h.gen)
		require.Equal(t, testMeta(107), h.meta)
		require.Equal(t, ends[len(ends)-1], end)
		require.Len(t, got, len(payloads))
		for i := range payloads {
			require.Equal(t, payloads[i], bytes.Clone(got[i]))
		}
		events, recs, err := walEvents(got[1])
		require.NoError(t, err)
		require.Len(t, events, 3)
		require.Len(t, recs, 3)
		require.Equal(t, uint64(3), events[1].position)
	}
}

// TestWal_TornTail cuts the log at every byte: the records wholly before
// the cut are read, and nothing else.
func TestWal_TornTail(t *testing.T) {
	data, ends := testLog(3, 0, testPayload(1, 2), testPayload(3, 1), testPayload(4, 4))
	for cut := walRecordsStart; cut <= len(data); cut++ {
		want := 0
		for want < len(ends) && ends[want] <= cut {
			want++
		}
		_, got, _, err := decodeWal(data[:cut])
		require.NoError(t, err)
		require.Len(t, got, want, "cut at %d", cut)
		// A torn write that leaves zeros behind reads the same.
		zeroed := append(bytes.Clone(data[:cut]), make([]byte, len(data)-cut)...)
		_, got, _, err = decodeWal(zeroed)
		require.NoError(t, err)
		require.Len(t, got, want, "zeros from %d", cut)
	}
}

// TestWal_StaleTail reuses a log: a new generation's records are written
// over the start of the old generation's, whose bytes stay behind them.
// Only the new generation's records are read, wherever the new ones end.
func TestWal_StaleTail(t *testing.T) {
	old, _ := testLog(4, 0, testPayload(1, 3), testPayload(4, 1), testPayload(5, 2), testPayload(7, 5))
	fresh, ends := testLog(5, 1, testPayload(20, 1), testPayload(21, 2))
	// The old header stays in slot 0, the new one is in slot 1.
	copy(fresh[:walSlotSize], old[:walSlotSize])
	for n := 0; n <= len(ends); n++ {
		end := walRecordsStart
		if n > 0 {
			end = ends[n-1]
		}
		data := bytes.Clone(old)
		if len(data) < end {
			data = append(data, make([]byte, end-len(data))...)
		}
		copy(data, fresh[:end])
		h, got, _, err := decodeWal(data)
		require.NoError(t, err)
		require.Equal(t, uint64(5), h.gen)
		require.Len(t, got, n, "%d new records", n)
	}
}

// TestWal_HeaderSlots: a torn or missing header falls back to the other
// slot; with neither valid, the log has no header.
func TestWal_HeaderSlots(t *testing.T) {
	data, _ := testLog(8, 0, testPayload(1, 1))
	newer := walHeader{gen: 9, meta: testMeta(200)}
	copy(data[walSlotSize:], appendWalHeader(nil, &newer))
	h, slot, err := pickWalHeader(data)
	require.NoError(t, err)
	require.Equal(t, 1, slot)
	require.Equal(t, uint64(9), h.gen)
	for i := walSlotSize; i < walSlotSize+walHeaderSize; i++ {
		torn := bytes.Clone(data)
		torn[i] ^= 0x40
		h, slot, err := pickWalHeader(torn)
		require.NoError(t, err)
		require.Equal(t, 0, slot, "flipped byte %d", i)
		require.Equal(t, uint64(8), h.gen)
	}
	// A meta that bbolt would not accept makes the header invalid.
	bad := walHeader{gen: 10, meta: testMeta(300)}
	bad.meta[pageHeaderSize+60] ^= 1 // its checksum
	copy(data[walSlotSize:], appendWalHeader(nil, &bad))
	_, slot, err = pickWalHeader(data)
	require.NoError(t, err)
	require.Equal(t, 0, slot)
	clear(data[:walSlotSize])
	_, _, err = pickWalHeader(data)
	require.ErrorIs(t, err, errNoWalHeader)
	_, _, _, err = decodeWal(nil)
	require.ErrorIs(t, err, errNoWalHeader)
}

func TestWal_BadPayload(t *testing.T) {
	p := testPayload(1, 2)
	_, _, err := walEvents(p[:len(p)-1])
	require.ErrorIs(t, err, eventstore.ErrCorrupt)
	flipped := bytes.Clone(p)
	flipped[20] ^= 1
	_, _, err = walEvents(flipped)
	require.ErrorIs(t, err, eventstore.ErrCorrupt)
	_, _, err = walEvents(p[:2])
	require.ErrorIs(t, err, eventstore.ErrCorrupt)
}

// FuzzDecodeWal decodes arbitrary logs: no panic, and every record read is
// one that encodes back to the bytes it was read from.
func FuzzDecodeWal(f *testing.F) {
	data, _ := testLog(3, 0, testPayload(1, 2), testPayload(3, 1))
	f.Add(data)
	f.Add(data[:len(data)-3])
	stale, _ := testLog(2, 1, testPayload(1, 5))
	f.Add(stale)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, payloads, end, err := decodeWal(data)
		if err != nil {
			if !errors.Is(err, errNoWalHeader) {
				t.Fatalf("error %v is not errNoWalHeader", err)
			}
			return
		}
		if end < walRecordsStart || (end > len(data) && end != walRecordsStart) {
			t.Fatalf("end %d outside the log of %d bytes", end, len(data))
		}
		off := walRecordsStart
		for _, p := range payloads {
			rec := appendWalRecord(nil, h.gen, p)
			if !bytes.Equal(rec, data[off:off+len(rec)]) {
				t.Fatalf("record at %d does not encode back", off)
			}
			off += len(rec)
			events, recs, err := walEvents(p)
			if err != nil {
				continue
			}
			var again []byte
			for _, r := range recs {
				again = appendWalEvent(again, r)
			}
			if !bytes.Equal(again, p) || len(events) != len(recs) {
				t.Fatal("payload does not split back")
			}
		}
		if off != end {
			t.Fatalf("records end at %d, decodeWal says %d", off, end)
		}
		var hdr [walHeaderSize]byte
		copy(hdr[:], appendWalHeader(nil, &h))
		if binary.BigEndian.Uint64(hdr[12:]) != h.gen {
			t.Fatal("header does not encode back")
		}
	})
}

// FuzzWalEvents splits arbitrary payloads: no panic, and an error matches
// ErrCorrupt.
func FuzzWalEvents(f *testing.F) {
	f.Add(testPayload(1, 3))
	f.Add([]byte{0, 0, 0, 1, 0xce})
	f.Fuzz(func(t *testing.T, p []byte) {
		if _, _, err := walEvents(p); err != nil && !errors.Is(err, eventstore.ErrCorrupt) {
			t.Fatalf("error %v does not match ErrCorrupt", err)
		}
	})
}
