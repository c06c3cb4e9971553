package postgres_test

import (
	"testing"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/pgtest"
	"github.com/eventstore-go/eventstore/storetest"
)

func TestImportConformance(t *testing.T) {
	pgtest.Admin(t)
	storetest.RunImport(t, func(t *testing.T) eventstore.Store { return mustOpen(t, nil) })
}
