package gen_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/dbosgen/dbosgen/gen"
	"github.com/dbosgen/dbosgen/internal/testmod"
)

// The README says to regenerate after any change to an annotated function,
// its body included, because dbos_gen.go carries the hash that is the
// default application version; and that comments, formatting and
// unannotated code leave it alone. This pins both halves.
func TestVersionHashFollowsAnnotatedCode(t *testing.T) {
	root := testmod.New(t)
	dir := filepath.Join(root, "shop")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const base = `package shop

import "context"

//dbos:step
func price(ctx context.Context, sku string) (int, error) { return len(sku), nil }

//dbos:workflow
func Order(ctx context.Context, sku string) (int, error) { return priceStep(ctx, sku) }

func helper() int { return 1 }
`
	versionRE := regexp.MustCompile(`const dbosgenAppVersion = "([0-9a-f]{64})"`)
	version := func(src string) string {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "shop.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := gen.Generate(gen.Options{Dir: root, Patterns: []string{"./shop"}})
		if err != nil || gen.HasErrors(res.Diagnostics) || len(res.Files) != 1 {
			t.Fatalf("Generate: %v %v", err, res.Diagnostics)
		}
		m := versionRE.FindSubmatch(res.Files[0].Content)
		if m == nil {
			t.Fatalf("no dbosgenAppVersion in:\n%s", res.Files[0].Content)
		}
		return string(m[1])
	}
	want := version(base)
	for _, c := range []struct {
		what, from, to string
		changes        bool
	}{
		{"a step's body", "return len(sku), nil", "return 2 * len(sku), nil", true},
		{"a workflow's body", "return priceStep(ctx, sku)", "n, err := priceStep(ctx, sku); return n + 1, err", true},
		{"a directive", "//dbos:step\n", "//dbos:step retries_allowed\n", true},
		{"a comment", "//dbos:workflow\n", "// Order places an order.\n//\n//dbos:workflow\n", false},
		{"formatting", "{ return len(sku), nil }", "{\n\treturn len(sku), nil\n}", false},
		{"unannotated code", "return 1 }", "return 2 }", false},
		{"a comment in a body", "{ return priceStep(ctx, sku) }", "{\n\t// Price first.\n\n\treturn priceStep(ctx, sku)\n}", false},
		{"line breaks in a signature", "func price(ctx context.Context, sku string)", "func price(\n\tctx context.Context,\n\tsku string,\n)", false},
	} {
		src := regexp.MustCompile(regexp.QuoteMeta(c.from)).ReplaceAllLiteralString(base, c.to)
		if src == base {
			t.Fatalf("%s: %q not found in the source", c.what, c.from)
		}
		if got := version(src); (got != want) != c.changes {
			t.Errorf("changing %s: version changed = %v, want %v", c.what, got != want, c.changes)
		}
	}
}
