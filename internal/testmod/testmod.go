// Package testmod gives the generator's and vet's tests a Go module of
// their own that imports this repository, without network access, and the
// sections of their txtar cases.
package testmod

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"
)

// New creates a module "example.com" in a temporary directory that requires
// this repository (through a replace directive) at the versions of its
// dependencies, so that test packages import the runtime and sqlx offline.
func New(t testing.TB) string {
	t.Helper()
	repo := Root(t)
	root := t.TempDir()
	mod, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(mod), "module github.com/dbosgen/dbosgen", "module example.com", 1)
	text += "\nrequire github.com/dbosgen/dbosgen v0.0.0\n\nreplace github.com/dbosgen/dbosgen => " + repo + "\n"
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// Root is the repository's top directory.
func Root(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the repository")
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// Section is the content of the file named name in ar, or nil.
func Section(ar *txtar.Archive, name string) []byte {
	for _, f := range ar.Files {
		if f.Name == name {
			return f.Data
		}
	}
	return nil
}
