package parse

import (
	"testing"

	cimodule "goerrprof.test/cimodule"
)

func TestMain(m *testing.M) { cimodule.Main(m, "parse") }

func TestBadInputs(t *testing.T) {
	bad := []string{"nohost", "h:x", "h:", "other", "h:99999999999999999999", "h:70000"}
	for _, s := range bad {
		if _, _, err := HostPort(s); err == nil {
			t.Fatalf("%q parsed", s)
		}
	}
	cimodule.Created(HostPort, len(bad))
	if _, p, err := HostPort("localhost:8080"); err != nil || p != 8080 {
		t.Fatalf("got %d, %v", p, err)
	}
}
