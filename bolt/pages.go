package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"

	"github.com/eventstore-go/eventstore"
)

// This file reads bbolt's page structure itself, from the file (ReadAt,
// never the memory map), checking every offset before it is used: bbolt
// trusts its pages and faults or panics on damaged ones, in places where
// neither SetPanicOnFault nor recover reaches (tx.Check walks pages in a
// goroutine of its own; Open panics on a damaged freelist after it has
// locked and mapped the file). Open vets the metas and the freelist with
// vetFile before bbolt sees the file, and Check walks every page with
// walkFile before it lets bbolt's tx.Check run.
//
// The layout (go.etcd.io/bbolt v1.5, internal/common), in the host's byte
// order: a page starts with a 16-byte header (id u64, flags u16, count u16,
// overflow u32); a page and its overflow pages are contiguous. Pages 0 and
// 1 are metas: magic u32, version u32, pageSize u32, flags u32, root bucket
// {root u64, sequence u64}, freelist u64, pgid (the high water mark) u64,
// txid u64, checksum u64 (FNV-64a of the bytes before it). A branch element
// is {pos u32, ksize u32, pgid u64}, a leaf element {flags u32, pos u32,
// ksize u32, vsize u32}; pos counts from the element itself. A leaf value
// flagged as a bucket is {root u64, sequence u64}, followed by the
// bucket's only (inline) page when root is 0. A freelist page holds count
// page ids, or, when count is 0xFFFF, the count in its first u64.

const (
	pageHeaderSize  = 16
	elementSize     = 16
	metaSize        = 64 // up to and including the checksum
	inBucketSize    = 16
	metaMagic       = 0xED0CDAED
	metaVersion     = 2
	flagBranch      = 0x01
	flagLeaf        = 0x02
	flagMeta        = 0x04
	flagFreelist    = 0x10
	leafFlagBucket  = 0x01
	pgidNoFreelist  = ^uint64(0)
	minPageSize     = 1024
	maxPageSize     = 1 << 24 // the largest bbolt looks for
	maxTreeDepth    = 64      // far beyond any real B+tree
	maxInlineNested = 64
)

var hostOrder = binary.NativeEndian

// boltMeta is a decoded meta page.
type boltMeta struct {
	magic, version, pageSize, flags uint32
	root, sequence                  uint64
	freelist, pgid, txid, checksum  uint64
}

// parseMeta decodes the meta in the page at the start of buf (a page
// header and metaSize bytes), and reports whether it is valid as bbolt
// judges it: its magic, version and checksum.
func parseMeta(buf []byte) (m boltMeta, err error) {
	if len(buf) < pageHeaderSize+metaSize {
		return m, fmt.Errorf("%w: meta page cut short (%d bytes)", eventstore.ErrCorrupt, len(buf))
	}
	b := buf[pageHeaderSize : pageHeaderSize+metaSize]
	m = boltMeta{
		magic:    hostOrder.Uint32(b[0:]),
		version:  hostOrder.Uint32(b[4:]),
		pageSize: hostOrder.Uint32(b[8:]),
		flags:    hostOrder.Uint32(b[12:]),
		root:     hostOrder.Uint64(b[16:]),
		sequence: hostOrder.Uint64(b[24:]),
		freelist: hostOrder.Uint64(b[32:]),
		pgid:     hostOrder.Uint64(b[40:]),
		txid:     hostOrder.Uint64(b[48:]),
		checksum: hostOrder.Uint64(b[56:]),
	}
	switch {
	case m.magic != metaMagic:
		return m, fmt.Errorf("%w: not a bbolt file (magic %#x)", eventstore.ErrUnknownFormat, m.magic)
	case m.version != metaVersion:
		return m, fmt.Errorf("%w: bbolt file version %d, this package reads %d", eventstore.ErrUnknownFormat, m.version, metaVersion)
	}
	h := fnv.New64a()
	h.Write(b[:56])
	if sum := h.Sum64(); sum != m.checksum {
		return m, fmt.Errorf("%w: meta checksum %#x, want %#x", eventstore.ErrCorrupt, m.checksum, sum)
	}
	return m, nil
}

// fileMeta is what vetFile learns of a file.
type fileMeta struct {
	pageSize int
	size     int64    // of the file
	meta     boltMeta // the meta bbolt uses: the valid one of the higher txid
	free     []uint64 // the freelist's page ids, sorted
	freePage uint64   // the freelist's page, and its overflow
	freeOver uint64
}

// readFull reads len(buf) bytes at off, or fails with ErrCorrupt.
func readFull(r io.ReaderAt, buf []byte, off int64) error {
	n, err := r.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: file ends inside the %d bytes at offset %d", eventstore.ErrCorrupt, len(buf), off)
	}
	return fmt.Errorf("read at %d: %w", off, err)
}

// vetFile checks what bbolt.Open reads of a file of size bytes before it
// trusts it: the metas (one of them valid, and the one bbolt will use
// consistent with the file's size) and that meta's freelist page. It
// returns an error matching ErrUnknownFormat for a file that is not bbolt's
// at all, and ErrCorrupt for a damaged one. An empty file passes (bbolt
// makes a new database in it): the caller handles size 0.
func vetFile(r io.ReaderAt, size int64) (*fileMeta, error) {
	// The page size, as bbolt finds it: from the first meta if it is
	// valid, otherwise from the second, looked for at every page size.
	var first [pageHeaderSize + metaSize]byte
	var firstErr error
	pageSize := 0
	if size < int64(len(first)) {
		return nil, fmt.Errorf("%w: %d bytes, too small for a bbolt file", eventstore.ErrUnknownFormat, size)
	}
	if err := readFull(r, first[:], 0); err != nil {
		return nil, err
	}
	if m, err := parseMeta(first[:]); err == nil {
		pageSize = int(m.pageSize)
	} else {
		firstErr = err
		for ps := int64(minPageSize); ps <= maxPageSize && ps+int64(len(first)) <= size; ps <<= 1 {
			var second [pageHeaderSize + metaSize]byte
			if err := readFull(r, second[:], ps); err != nil {
				return nil, err
			}
			if m, err := parseMeta(second[:]); err == nil {
				pageSize = int(m.pageSize)
				break
			} else if !errors.Is(err, eventstore.ErrUnknownFormat) {
				firstErr = err // a bbolt meta, damaged: a damaged bbolt file
			}
		}
		if pageSize == 0 {
			return nil, firstErr
		}
	}
	if pageSize < minPageSize || pageSize > maxPageSize || pageSize&(pageSize-1) != 0 {
		return nil, fmt.Errorf("%w: page size %d", eventstore.ErrCorrupt, pageSize)
	}
	if size < 2*int64(pageSize) {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the two meta pages of %d bytes", eventstore.ErrCorrupt, size, pageSize)
	}

	// Both metas at that page size; bbolt uses the valid one of the higher
	// txid (meta 0 on a tie).
	var metas [2]boltMeta
	var errs [2]error
	for i := range metas {
		var buf [pageHeaderSize + metaSize]byte
		if err := readFull(r, buf[:], int64(i*pageSize)); err != nil {
			return nil, err
		}
		metas[i], errs[i] = parseMeta(buf[:])
		if errs[i] == nil && int(metas[i].pageSize) != pageSize {
			errs[i] = fmt.Errorf("%w: meta %d has page size %d, meta pages are %d apart", eventstore.ErrCorrupt, i, metas[i].pageSize, pageSize)
		}
	}
	a, b := 0, 1
	if metas[1].txid > metas[0].txid {
		a, b = 1, 0
	}
	var m boltMeta
	switch {
	case errs[a] == nil:
		m = metas[a]
	case errs[b] == nil:
		m = metas[b]
	default:
		return nil, fmt.Errorf("%w: both meta pages are invalid: %w; %w", eventstore.ErrCorrupt, errs[0], errs[1])
	}

	fm := &fileMeta{pageSize: pageSize, size: size, meta: m}
	filePages := uint64(size / int64(pageSize))
	switch {
	case m.pgid < 4 || m.pgid > filePages:
		return nil, fmt.Errorf("%w: meta (txid %d): high water mark %d outside the file's %d pages", eventstore.ErrCorrupt, m.txid, m.pgid, filePages)
	case m.root < 2 || m.root >= m.pgid:
		return nil, fmt.Errorf("%w: meta (txid %d): root page %d outside pages 2 to %d", eventstore.ErrCorrupt, m.txid, m.root, m.pgid-1)
	case m.freelist == pgidNoFreelist:
		return nil, fmt.Errorf("%w: meta (txid %d) has no freelist; this package always writes one", eventstore.ErrCorrupt, m.txid)
	case m.freelist < 2 || m.freelist >= m.pgid:
		return nil, fmt.Errorf("%w: meta (txid %d): freelist page %d outside pages 2 to %d", eventstore.ErrCorrupt, m.txid, m.freelist, m.pgid-1)
	}

	// The freelist page.
	p, err := readPage(r, fm, m.freelist)
	if err != nil {
		return nil, fmt.Errorf("freelist: %w", err)
	}
	if p.flags != flagFreelist {
		return nil, fmt.Errorf("%w: freelist page %d has type %#x", eventstore.ErrCorrupt, m.freelist, p.flags)
	}
	fm.freePage, fm.freeOver = m.freelist, uint64(p.overflow)
	body := p.data[pageHeaderSize:]
	count, idx := uint64(p.count), uint64(0)
	if count == 0xFFFF {
		if len(body) < 8 {
			return nil, fmt.Errorf("%w: freelist page %d cut short", eventstore.ErrCorrupt, m.freelist)
		}
		count, idx = hostOrder.Uint64(body), 1
	}
	if count > uint64(len(body))/8-idx {
		return nil, fmt.Errorf("%w: freelist page %d: %d ids do not fit in %d bytes", eventstore.ErrCorrupt, m.freelist, count, len(body))
	}
	ids := make([]uint64, count)
	for i := range ids {
		ids[i] = hostOrder.Uint64(body[(idx+uint64(i))*8:])
		if ids[i] < 2 || ids[i] >= m.pgid {
			return nil, fmt.Errorf("%w: freelist page %d: free page %d outside pages 2 to %d", eventstore.ErrCorrupt, m.freelist, ids[i], m.pgid-1)
		}
	}
	slices.Sort(ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			return nil, fmt.Errorf("%w: freelist page %d: page %d free twice", eventstore.ErrCorrupt, m.freelist, ids[i])
		}
	}
	for _, id := range ids {
		if id >= fm.freePage && id <= fm.freePage+fm.freeOver {
			return nil, fmt.Errorf("%w: freelist page %d lists itself (page %d) as free", eventstore.ErrCorrupt, m.freelist, id)
		}
	}
	fm.free = ids
	return fm, nil
}

// page is a page read from the file, with its overflow pages.
type page struct {
	id       uint64
	flags    uint16
	count    uint16
	overflow uint32
	data     []byte // the header and the rest, (overflow+1)*pageSize bytes
}

// readPage reads page id and its overflow pages, checking that they lie
// below the high water mark and inside the file, and that the header names
// the page.
func readPage(r io.ReaderAt, fm *fileMeta, id uint64) (*page, error) {
	if id >= fm.meta.pgid {
		return nil, fmt.Errorf("%w: page %d at or above the high water mark %d", eventstore.ErrCorrupt, id, fm.meta.pgid)
	}
	ps := int64(fm.pageSize)
	var hdr [pageHeaderSize]byte
	if err := readFull(r, hdr[:], int64(id)*ps); err != nil {
		return nil, err
	}
	p := &page{
		id:       hostOrder.Uint64(hdr[0:]),
		flags:    hostOrder.Uint16(hdr[8:]),
		count:    hostOrder.Uint16(hdr[10:]),
		overflow: hostOrder.Uint32(hdr[12:]),
	}
	if p.id != id {
		return nil, fmt.Errorf("%w: page %d says it is page %d", eventstore.ErrCorrupt, id, p.id)
	}
	if uint64(p.overflow) >= fm.meta.pgid-id {
		return nil, fmt.Errorf("%w: page %d: %d overflow pages run past the high water mark %d", eventstore.ErrCorrupt, id, p.overflow, fm.meta.pgid)
	}
	p.data = make([]byte, (int64(p.overflow)+1)*ps)
	if err := readFull(r, p.data, int64(id)*ps); err != nil {
		return nil, err
	}
	return p, nil
}

// walkFile checks the whole page structure of a bbolt file of size bytes:
// vetFile's checks, then every bucket's B+tree from the root (every page
// reached once, of the right type, below the high water mark; every
// element and its key and value inside its page; keys in order, and inside
// the range their parent gives them), and that every page below the high
// water mark is reached, free, or a meta, exactly once. The error matches
// ErrCorrupt (or ErrUnknownFormat) and names the first problem.
//
// It stops with ctx's error when ctx is done.
func walkFile(ctx context.Context, r io.ReaderAt, size int64) (*fileMeta, error) {
	fm, err := vetFile(r, size)
	if err != nil {
		return nil, err
	}
	w := &walker{ctx: ctx, r: r, fm: fm, owner: make([]byte, fm.meta.pgid)}
	w.owner[0], w.owner[1] = 'm', 'm'
	if err := w.claim(fm.freePage, uint64(fm.freeOver), 'l'); err != nil {
		return nil, err
	}
	for _, id := range fm.free {
		if err := w.claim(id, 0, 'f'); err != nil {
			return nil, err
		}
	}
	if err := w.tree(fm.meta.root, nil, nil, 0, 0); err != nil {
		return nil, err
	}
	for id, o := range w.owner {
		if o == 0 {
			return nil, fmt.Errorf("%w: page %d is neither reachable nor free", eventstore.ErrCorrupt, id)
		}
	}
	return fm, nil
}

type walker struct {
	ctx   context.Context
	read  int // pages read, to check ctx now and then
	r     io.ReaderAt
	fm    *fileMeta
	owner []byte // per page below the high water mark: who uses it, 0 for none yet
}

var ownerNames = map[byte]string{'m': "a meta page", 'l': "the freelist", 'f': "free", 't': "in a tree"}

// claim records that pages id to id+overflow are used as what.
func (w *walker) claim(id, overflow uint64, what byte) error {
	if id >= uint64(len(w.owner)) || overflow >= uint64(len(w.owner))-id {
		return fmt.Errorf("%w: page %d (+%d) past the high water mark %d", eventstore.ErrCorrupt, id, overflow, len(w.owner))
	}
	for p := id; p <= id+overflow; p++ {
		if o := w.owner[p]; o != 0 {
			return fmt.Errorf("%w: page %d is %s and %s", eventstore.ErrCorrupt, p, ownerNames[o], ownerNames[what])
		}
		w.owner[p] = what
	}
	return nil
}

// tree walks the B+tree node at page id, whose keys must lie in [lo, hi)
// (nil for no bound), depth pages below a bucket's root, inside nested
// inline buckets.
func (w *walker) tree(id uint64, lo, hi []byte, depth, nested int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("%w: page %d: B+tree deeper than %d", eventstore.ErrCorrupt, id, maxTreeDepth)
	}
	if id < 2 {
		return fmt.Errorf("%w: tree page %d is a meta page", eventstore.ErrCorrupt, id)
	}
	if w.read++; w.read%1024 == 0 {
		if err := w.ctx.Err(); err != nil {
			return err
		}
	}
	p, err := readPage(w.r, w.fm, id)
	if err != nil {
		return err
	}
	if err := w.claim(id, uint64(p.overflow), 't'); err != nil {
		return err
	}
	switch p.flags {
	case flagBranch:
		return w.branch(p, lo, hi, depth, nested)
	case flagLeaf:
		return w.leaf(fmt.Sprintf("page %d", id), p.data, p.count, lo, hi, nested)
	default:
		return fmt.Errorf("%w: page %d in a tree has type %#x", eventstore.ErrCorrupt, id, p.flags)
	}
}

// elemKey returns the key (and the bytes after it) of the element at elem
// in data, with pos counting from elem.
func elemKey(data []byte, elem, pos, ksize, vsize uint64) (key, value []byte, ok bool) {
	start := elem + pos
	if pos == 0 || start > uint64(len(data)) || ksize > uint64(len(data))-start || vsize > uint64(len(data))-start-ksize {
		return nil, nil, false
	}
	return data[start : start+ksize], data[start+ksize : start+ksize+vsize], true
}

func (w *walker) branch(p *page, lo, hi []byte, depth, nested int) error {
	n := uint64(p.count)
	if n == 0 {
		return fmt.Errorf("%w: branch page %d has no elements", eventstore.ErrCorrupt, p.id)
	}
	if pageHeaderSize+n*elementSize > uint64(len(p.data)) {
		return fmt.Errorf("%w: branch page %d: %d elements do not fit", eventstore.ErrCorrupt, p.id, n)
	}
	keys := make([][]byte, n)
	children := make([]uint64, n)
	for i := range n {
		e := pageHeaderSize + i*elementSize
		pos := uint64(hostOrder.Uint32(p.data[e:]))
		ksize := uint64(hostOrder.Uint32(p.data[e+4:]))
		key, _, ok := elemKey(p.data, e, pos, ksize, 0)
		if !ok {
			return fmt.Errorf("%w: branch page %d: element %d's key (pos %d, size %d) outside the page", eventstore.ErrCorrupt, p.id, i, pos, ksize)
		}
		if err := keyInRange(fmt.Sprintf("branch page %d element %d", p.id, i), key, keys, i, lo, hi); err != nil {
			return err
		}
		keys[i] = key
		children[i] = hostOrder.Uint64(p.data[e+8:])
	}
	for i := range n {
		childHi := hi
		if i+1 < n {
			childHi = keys[i+1]
		}
		if err := w.tree(children[i], keys[i], childHi, depth+1, nested); err != nil {
			return err
		}
	}
	return nil
}

// keyInRange checks that key follows keys[i-1] and lies in [lo, hi).
func keyInRange(where string, key []byte, keys [][]byte, i uint64, lo, hi []byte) error {
	switch {
	case i > 0 && bytes.Compare(keys[i-1], key) >= 0:
		return fmt.Errorf("%w: %s: key %x does not follow %x", eventstore.ErrCorrupt, where, key, keys[i-1])
	case lo != nil && bytes.Compare(key, lo) < 0:
		return fmt.Errorf("%w: %s: key %x below its parent's %x", eventstore.ErrCorrupt, where, key, lo)
	case hi != nil && bytes.Compare(key, hi) >= 0:
		return fmt.Errorf("%w: %s: key %x not below the next parent key %x", eventstore.ErrCorrupt, where, key, hi)
	}
	return nil
}

// leaf checks the leaf node in data (a page, or an inline bucket's page)
// with count elements, and walks the buckets it holds.
func (w *walker) leaf(where string, data []byte, count uint16, lo, hi []byte, nested int) error {
	n := uint64(count)
	if pageHeaderSize+n*elementSize > uint64(len(data)) {
		return fmt.Errorf("%w: leaf %s: %d elements do not fit", eventstore.ErrCorrupt, where, n)
	}
	keys := make([][]byte, n)
	for i := range n {
		e := pageHeaderSize + i*elementSize
		flags := hostOrder.Uint32(data[e:])
		pos := uint64(hostOrder.Uint32(data[e+4:]))
		ksize := uint64(hostOrder.Uint32(data[e+8:]))
		vsize := uint64(hostOrder.Uint32(data[e+12:]))
		key, value, ok := elemKey(data, e, pos, ksize, vsize)
		if !ok {
			return fmt.Errorf("%w: leaf %s: element %d (pos %d, key %d, value %d bytes) outside the page", eventstore.ErrCorrupt, where, i, pos, ksize, vsize)
		}
		if err := keyInRange(fmt.Sprintf("leaf %s element %d", where, i), key, keys, i, lo, hi); err != nil {
			return err
		}
		keys[i] = key
		switch flags {
		case 0:
		case leafFlagBucket:
			if err := w.bucket(fmt.Sprintf("%s/%x", where, key), value, nested); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: leaf %s: element %d has flags %#x", eventstore.ErrCorrupt, where, i, flags)
		}
	}
	return nil
}

// bucket walks the bucket whose value (from its parent's leaf) is value.
func (w *walker) bucket(where string, value []byte, nested int) error {
	if len(value) < inBucketSize {
		return fmt.Errorf("%w: bucket %s: value of %d bytes", eventstore.ErrCorrupt, where, len(value))
	}
	root := hostOrder.Uint64(value)
	if root != 0 {
		return w.tree(root, nil, nil, 0, nested)
	}
	if nested >= maxInlineNested {
		return fmt.Errorf("%w: bucket %s: inline buckets nested deeper than %d", eventstore.ErrCorrupt, where, maxInlineNested)
	}
	inline := value[inBucketSize:]
	if len(inline) < pageHeaderSize {
		return fmt.Errorf("%w: inline bucket %s: %d bytes", eventstore.ErrCorrupt, where, len(inline))
	}
	if flags := hostOrder.Uint16(inline[8:]); flags != flagLeaf {
		return fmt.Errorf("%w: inline bucket %s: page type %#x", eventstore.ErrCorrupt, where, flags)
	}
	// An inline page occupies its parent's value, not pages of the file;
	// bbolt does not set its id.
	if over := hostOrder.Uint32(inline[12:]); over != 0 {
		return fmt.Errorf("%w: inline bucket %s: %d overflow pages", eventstore.ErrCorrupt, where, over)
	}
	return w.leaf("inline "+where, inline, hostOrder.Uint16(inline[10:]), nil, nil, nested+1)
}

// validMeta reports whether one of the two meta pages of a file of page
// size pageSize is valid, which is what bbolt's Begin needs not to panic.
func validMeta(r io.ReaderAt, pageSize int) error {
	var errs [2]error
	for i := range errs {
		var buf [pageHeaderSize + metaSize]byte
		if errs[i] = readFull(r, buf[:], int64(i*pageSize)); errs[i] == nil {
			if _, errs[i] = parseMeta(buf[:]); errs[i] == nil {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: both meta pages are invalid: %w; %w", eventstore.ErrCorrupt, errs[0], errs[1])
}
