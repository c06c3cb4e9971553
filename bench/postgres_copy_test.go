package bench

import (
	"slices"
	"testing"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/memory"
)

// TestPostgresCopy checks the COPY loader of PostgreSQL's fixture: it
// stores what one Append per call stores, and appends continue the log
// after it.
func TestPostgresCopy(t *testing.T) {
	h := openPostgres(t, false, true)
	defer func() {
		h.Close()
		h.cleanup()
	}()
	mem := memory.New(nil)
	sh := shape{smallAggs: 15, smallLen: 12, bigLen: 40}
	var info fixtureInfo
	if err := loadPostgresCopy(t, h, calls(sh, &info)); err != nil {
		t.Fatal(err)
	}
	if err := appendCalls(t, &handle{target: mem}, calls(sh, &info)); err != nil {
		t.Fatal(err)
	}
	for name, reads := range map[string][2]iterSeq{
		"ReadAll":       {h.ReadAll(background, 0), mem.ReadAll(background, 0)},
		"ReadAggregate": {h.ReadAggregate(background, smallAggregate(3), 0), mem.ReadAggregate(background, smallAggregate(3), 0)},
		"ReadType":      {h.ReadType(background, replayType, 0), mem.ReadType(background, replayType, 0)},
		"ReadTime":      {h.ReadTime(background, "", info.Start, info.End), mem.ReadTime(background, "", info.Start, info.End)},
	} {
		got, err := eventstore.Collect(reads[0])
		if err != nil {
			t.Fatal(err)
		}
		want, _ := eventstore.Collect(reads[1])
		if len(want) == 0 || !slices.EqualFunc(got, want, sameEvent) {
			t.Errorf("%s after COPY:\n got %v\nwant %v", name, got, want)
		}
	}
	stored, err := h.Append(background, event(bigAggregate, uint64(sh.bigLen+1), 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if stored[0].Position != uint64(sh.events()+1) {
		t.Errorf("an Append after COPY got position %d, want %d", stored[0].Position, sh.events()+1)
	}
}
