package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

const vetSrc = `package shop

import (
	"context"
	"os"
	"time"
)

//dbos:step
func fetch(ctx context.Context, sku string) (int, error) { return int(time.Now().Unix()), nil }

func region() string { return os.Getenv("REGION") }

//dbos:workflow
func order(ctx context.Context, sku string) (string, error) {
	n, err := fetchStep(ctx, sku)
	if err != nil {
		return "", err
	}
	_ = n
	return region() + time.Now().String(), nil
}
`

// TestVet runs dbosgen vet as a user would: before generating (the
// wrappers are undefined: it says to generate), after (findings, sorted,
// exit 1; generation printed the same as warnings), and once fixed (exit 0).
func TestVet(t *testing.T) {
	root := newModule(t)
	dir := filepath.Join(root, "shop")
	write(t, filepath.Join(dir, "shop.go"), vetSrc)
	t.Chdir(dir)

	code, _, errs := run(t, "vet")
	if code != exitError || !strings.Contains(errs, "undefined: fetchStep") || !strings.Contains(errs, "run go generate first") {
		t.Fatalf("vet before generating: exit %d\n%s", code, errs)
	}

	code, _, genErrs := run(t)
	if code != exitOK {
		t.Fatalf("generate: exit %d\n%s", code, genErrs)
	}
	want := []string{
		"shop.go:12:31: os.Getenv reads the process's environment, which can differ in the process that recovers the workflow: pass the value as a workflow input, or read it in a step (workflow order → region)",
		"shop.go:21:20: time.Now reads the clock, and a recovered workflow reads another time: read it in a step, which records it (workflow order)",
		"dbosgen vet: 2 findings",
	}
	code, stdout, errs := run(t, "vet", "./...")
	if code != exitError || stdout != "" || errs != strings.Join(want, "\n")+"\n" {
		t.Fatalf("vet: exit %d\nstdout:\n%s\nstderr:\n%s\nwant stderr:\n%s", code, stdout, errs, strings.Join(want, "\n"))
	}
	for _, w := range want[:2] {
		i := strings.Index(w, ": ")
		if warning := w[:i] + ": warning: " + w[i+2:]; !strings.Contains(genErrs, warning) {
			t.Errorf("generation did not warn %q:\n%s", warning, genErrs)
		}
	}

	fixed := strings.Replace(vetSrc, "return region() + time.Now().String(), nil", "return region() + \"x\", nil //dbos:allow REGION is fixed per deployment", 1)
	write(t, filepath.Join(dir, "shop.go"), fixed)
	if code, _, errs := run(t, "vet"); code != exitOK || errs != "" {
		t.Fatalf("vet after the fix: exit %d\n%s", code, errs)
	}
}

func TestVetUsage(t *testing.T) {
	code, _, errs := run(t, "vet", "-h")
	if code != exitOK || !strings.Contains(errs, "//dbos:allow <reason>") || !strings.Contains(errs, "map-order") {
		t.Fatalf("vet -h: exit %d\n%s", code, errs)
	}
	if code, _, _ := run(t, "vet", "-nope"); code != exitUsage {
		t.Fatalf("vet -nope: exit %d, want %d", code, exitUsage)
	}
}
