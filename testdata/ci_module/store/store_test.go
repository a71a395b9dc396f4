package store

import (
	"errors"
	"fmt"
	"os"
	"testing"

	cimodule "goerrprof.test/cimodule"
)

func TestMain(m *testing.M) { cimodule.Main(m, "store") }

func TestMissingKeys(t *testing.T) {
	s := New(false)
	n := 5
	if cimodule.Regress() {
		n = 10 // the regression doubles this site
	}
	for i := 0; i < n; i++ {
		_, err := s.Get(fmt.Sprintf("missing-%d", i))
		var nf *NotFoundError
		if !errors.As(err, &nf) {
			t.Fatalf("want *NotFoundError, got %v", err)
		}
	}
	cimodule.Created((*Store).Get, n)
	if os.Getenv("GOERRPROF_FAIL") == "1" {
		t.Fatal("failing on purpose (GOERRPROF_FAIL=1)")
	}
}

func TestReadOnly(t *testing.T) {
	if !cimodule.Regress() {
		return // the regression adds this site
	}
	s := New(true)
	for i := 0; i < 3; i++ {
		if err := s.Put("k", "v"); err == nil {
			t.Fatal("read-only store accepted a write")
		}
	}
	// Each Put creates two errors there: the *ReadOnlyError and its wrapper.
	cimodule.Created((*Store).Put, 2*3)
}
