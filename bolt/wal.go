package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/eventstore-go/eventstore"
)

// This file holds the format of the write-ahead log, the file <path>-wal
// beside a store's file (see "Write-ahead log" in the package doc). All
// integers are big-endian.
//
//	[0, 4096)     header slot 0
//	[4096, 8192)  header slot 1
//	[8192, ...)   records, one after the other
//
// A header (in a slot, the rest of which is unused):
//
//	magic "esbltwal", version u32 (1), generation u64,
//	meta length u32 (80), meta (bbolt's meta page: its 16-byte page header
//	and the 64 bytes of the meta), CRC32C u32 of everything before it
//
// The meta is the durable base of the generation: the state of the store's
// file that the generation's records follow. Of the two slots, the valid
// header of the higher generation is the log's; a checkpoint writes the
// next generation into the other slot, so that a torn header write leaves
// the previous header in place.
//
// A record:
//
//	length u32 (of the payload), CRC32C u32 of the generation (8 bytes),
//	the length (4 bytes) and the payload, generation u64, payload
//
// and its payload holds the events of one commit, each as its length u32
// and its event record (the record the events bucket holds, see record.go:
// it carries every field, position and version included). A log is read
// from the first record on, while records carry the header's generation
// and pass their CRC: the first that does not (a torn write, zeros, or the
// bytes of an older generation left behind by a reused log) ends it.

const (
	walSuffix       = "-wal"
	walMagic        = "esbltwal"
	walVersion      = 1
	walSlotSize     = 4096
	walRecordsStart = 2 * walSlotSize
	walHeaderSize   = 8 + 4 + 8 + 4 + walMetaSize + 4
	walMetaSize     = pageHeaderSize + metaSize
	walRecordHeader = 16
	// walMaxRecord bounds a record's length: a commit holds at most
	// maxBatchRequests requests of at most maxBatchBytes of payloads
	// (and one request beyond), far below it.
	walMaxRecord = 1 << 30
)

// walHeader is a decoded header.
type walHeader struct {
	gen  uint64
	meta [walMetaSize]byte // bbolt's meta page, as it is on disk
}

// errNoWalHeader reports a log without a valid header: created but never
// put to use, so that its records (if any) are not to be replayed.
var errNoWalHeader = errors.New("bolt: log has no valid header")

// errWalVersion reports a log whose header is whole (its magic and CRC
// hold) but of another version of the log: a later version of this
// package wrote it, and only that version may replay or remove it.
var errWalVersion = fmt.Errorf("%w: a log of another version", eventstore.ErrUnknownFormat)

// appendWalHeader appends the encoding of h (walHeaderSize bytes).
func appendWalHeader(dst []byte, h *walHeader) []byte {
	start := len(dst)
	dst = append(dst, walMagic...)
	dst = binary.BigEndian.AppendUint32(dst, walVersion)
	dst = binary.BigEndian.AppendUint64(dst, h.gen)
	dst = binary.BigEndian.AppendUint32(dst, walMetaSize)
	dst = append(dst, h.meta[:]...)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// parseWalHeader decodes the header at the start of b, and checks its
// magic, version, CRC and that its meta is a valid bbolt meta.
func parseWalHeader(b []byte) (walHeader, error) {
	var h walHeader
	if len(b) < walHeaderSize {
		return h, errors.New("header cut short")
	}
	b = b[:walHeaderSize]
	if string(b[:8]) != walMagic {
		return h, errors.New("no header magic")
	}
	if sum := binary.BigEndian.Uint32(b[walHeaderSize-4:]); sum != crc32.Checksum(b[:walHeaderSize-4], castagnoli) {
		return h, errors.New("header checksum mismatch")
	}
	if v := binary.BigEndian.Uint32(b[8:]); v != walVersion {
		return h, fmt.Errorf("%w: log version %d, this package reads %d", errWalVersion, v, walVersion)
	}
	if n := binary.BigEndian.Uint32(b[20:]); n != walMetaSize {
		return h, fmt.Errorf("meta of %d bytes, want %d", n, walMetaSize)
	}
	h.gen = binary.BigEndian.Uint64(b[12:])
	copy(h.meta[:], b[24:])
	if _, err := parseMeta(h.meta[:]); err != nil {
		return h, fmt.Errorf("header's meta: %w", err)
	}
	return h, nil
}

// pickWalHeader returns the header of the log data (its first bytes, at
// least): the valid one of the higher generation, and its slot. It fails
// with errNoWalHeader when neither slot holds a valid header, and with
// errWalVersion when either holds a whole header of another version.
func pickWalHeader(data []byte) (h walHeader, slot int, err error) {
	var errs [2]error
	var hs [2]walHeader
	for i := range hs {
		if len(data) < i*walSlotSize {
			errs[i] = errors.New("log cut short")
			continue
		}
		hs[i], errs[i] = parseWalHeader(data[i*walSlotSize:])
		if errors.Is(errs[i], errWalVersion) {
			return h, 0, fmt.Errorf("bolt: log slot %d: %w", i, errs[i])
		}
	}
	switch {
	case errs[0] != nil && errs[1] != nil:
		return h, 0, fmt.Errorf("%w (slot 0: %v; slot 1: %v)", errNoWalHeader, errs[0], errs[1])
	case errs[1] != nil || (errs[0] == nil && hs[0].gen > hs[1].gen):
		return hs[0], 0, nil
	default:
		return hs[1], 1, nil
	}
}

// appendWalRecord appends to dst the record of generation gen whose
// payload is payload.
func appendWalRecord(dst []byte, gen uint64, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, walRecordHeader)...)
	dst = append(dst, payload...)
	sealWalRecord(dst[start:], gen)
	return dst
}

// sealWalRecord fills in the header of the record rec, whose payload
// follows walRecordHeader bytes reserved for the header.
func sealWalRecord(rec []byte, gen uint64) {
	binary.BigEndian.PutUint32(rec[0:], uint32(len(rec)-walRecordHeader))
	binary.BigEndian.PutUint64(rec[8:], gen)
	binary.BigEndian.PutUint32(rec[4:], walRecordSum(rec))
}

// walRecordSum is the CRC of the record rec: of its generation, its
// length, and its payload.
func walRecordSum(rec []byte) uint32 {
	sum := crc32.Update(0, castagnoli, rec[8:16])
	sum = crc32.Update(sum, castagnoli, rec[0:4])
	return crc32.Update(sum, castagnoli, rec[walRecordHeader:])
}

// nextWalRecord decodes the record at the start of b if it is a whole
// record of generation gen whose CRC passes, and returns its payload and
// its size. ok is false at the end of the log.
func nextWalRecord(b []byte, gen uint64) (payload []byte, size int, ok bool) {
	if len(b) < walRecordHeader {
		return nil, 0, false
	}
	n := uint64(binary.BigEndian.Uint32(b))
	if n > walMaxRecord || n > uint64(len(b)-walRecordHeader) {
		return nil, 0, false
	}
	if binary.BigEndian.Uint64(b[8:]) != gen {
		return nil, 0, false
	}
	rec := b[:walRecordHeader+n]
	if binary.BigEndian.Uint32(b[4:]) != walRecordSum(rec) {
		return nil, 0, false
	}
	return rec[walRecordHeader:], len(rec), true
}

// decodeWal decodes a whole log: its header and the payloads of its
// records, in order, up to the end of the log (see nextWalRecord). It fails
// with errNoWalHeader when no slot holds a valid header (errWalVersion
// when one holds a header of another version). The payloads alias data.
func decodeWal(data []byte) (h walHeader, payloads [][]byte, end int, err error) {
	h, _, err = pickWalHeader(data)
	if err != nil {
		return h, nil, 0, err
	}
	end = walRecordsStart
	for end < len(data) {
		p, n, ok := nextWalRecord(data[end:], h.gen)
		if !ok {
			break
		}
		payloads = append(payloads, p)
		end += n
	}
	return h, payloads, end, nil
}

// appendWalEvent appends the event record rec to a record's payload.
func appendWalEvent(dst, rec []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(rec)))
	return append(dst, rec...)
}

// walEvents splits the payload of a record into its event records, each
// checked (its CRC and fields). A payload that does not split, or a record
// that fails, is an error matching eventstore.ErrCorrupt: a record whose
// CRC passed holds what was written.
func walEvents(payload []byte) ([]rawEvent, [][]byte, error) {
	var events []rawEvent
	var recs [][]byte
	for len(payload) > 0 {
		var r rawEvent
		rec, rest, err := nextWalEvent(&r, payload)
		if err != nil {
			return nil, nil, err
		}
		events = append(events, r)
		recs = append(recs, rec)
		payload = rest
	}
	return events, recs, nil
}

// nextWalEvent splits the first event record off payload, a record's
// payload that is not empty, and parses it into *r: it returns the record
// and the rest of payload, or an error matching eventstore.ErrCorrupt.
func nextWalEvent(r *rawEvent, payload []byte) (rec, rest []byte, err error) {
	if len(payload) < 4 {
		return nil, nil, fmt.Errorf("bolt: log: %w: record payload ends inside a length", eventstore.ErrCorrupt)
	}
	n := uint64(binary.BigEndian.Uint32(payload))
	if n > uint64(len(payload)-4) {
		return nil, nil, fmt.Errorf("bolt: log: %w: event record of %d bytes in %d", eventstore.ErrCorrupt, n, len(payload)-4)
	}
	rec = payload[4 : 4+n]
	if err := parseEventRecordTo(r, rec); err != nil {
		return nil, nil, fmt.Errorf("bolt: log: %w: event record: %w", eventstore.ErrCorrupt, err)
	}
	return rec, payload[4+n:], nil
}
