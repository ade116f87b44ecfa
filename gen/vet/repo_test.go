package vet_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dbosgen/dbosgen/gen/vet"
	"github.com/dbosgen/dbosgen/internal/testmod"
)

// TestRepositoryHasNoFindings vets this repository's own workflows: the
// examples, the torture worker and the interoperability app (a module of
// its own). The examples' demo instrumentation carries //dbos:allow with its
// reason; anything else found is a false positive or a bug to fix. The
// dbosgen init scaffold is vetted by the cli package's init test.
func TestRepositoryHasNoFindings(t *testing.T) {
	if testing.Short() {
		t.Skip("loads the whole module")
	}
	repo := testmod.Root(t)
	dirs := []string{repo}
	if _, err := os.Stat(filepath.Join(repo, "interop", "go.mod")); err == nil {
		dirs = append(dirs, filepath.Join(repo, "interop"))
	}
	for _, dir := range dirs {
		findings, err := vet.Run(vet.Config{Dir: dir}, "./...")
		if err != nil {
			t.Fatalf("vet ./... in %s: %v", dir, err)
		}
		for _, f := range findings {
			t.Errorf("%s", f.Format(repo))
		}
	}
}
