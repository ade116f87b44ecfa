package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

// recoverable is a registered workflow with its types erased, so that
// recovery can decode a row's inputs and run it without reflection.
type recoverable interface {
	workflowName() string
	resume(ctx context.Context, rt *Runtime, row sysdb.WorkflowRow) error
	replay(ctx context.Context, rt *Runtime, row sysdb.WorkflowRow, steps map[int]sysdb.StepRow) error // testkit.go
}

var registry = struct {
	sync.RWMutex
	workflows map[string]recoverable
	versions  map[string]string // package path -> hash of its annotated code
	dups      []string
}{workflows: map[string]recoverable{}, versions: map[string]string{}}

func register(w recoverable) {
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.workflows[w.workflowName()]; dup {
		// Two packages chose the same name=: recovery could run the wrong
		// function, so Launch refuses to start (see registryError).
		registry.dups = append(registry.dups, w.workflowName())
		return
	}
	registry.workflows[w.workflowName()] = w
}

func registryError() error {
	registry.RLock()
	defer registry.RUnlock()
	if len(registry.dups) > 0 {
		return fmt.Errorf("%w: workflow names registered twice: %v; give each workflow a unique name=", ErrConfig, registry.dups)
	}
	return nil
}

func lookupWorkflow(name string) (recoverable, bool) {
	registry.RLock()
	defer registry.RUnlock()
	w, ok := registry.workflows[name]
	return w, ok
}

// RegisterVersion records the hash of a package's annotated code. Generated
// code calls it from init; the default application version combines every
// package's.
func RegisterVersion(pkgPath, hash string) {
	registry.Lock()
	defer registry.Unlock()
	registry.versions[pkgPath] = hash
}

func generatedVersion() string {
	registry.RLock()
	defer registry.RUnlock()
	pkgs := make([]string, 0, len(registry.versions))
	for p := range registry.versions {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	h := sha256.New()
	for _, p := range pkgs {
		fmt.Fprintf(h, "%s=%s\n", p, registry.versions[p])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
