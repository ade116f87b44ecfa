package gen

import (
	"errors"
	"strings"
	"testing"

	"github.com/dbosgen/dbosgen/gen/vet"
)

// FuzzParseDirective checks the directive parser on arbitrary comments: it
// never panics, every offset it reports lies inside the text, the canonical
// form reparses to the same directive, and decoding any kind's options never
// panics either. Seeds live in testdata/fuzz/FuzzParseDirective as well.
func FuzzParseDirective(f *testing.F) {
	for _, s := range []string{
		"//dbos:step",
		"//dbos:workflow name=x max_recovery_attempts=3 timeout=1m",
		"//dbos:step retries_allowed=true max_attempts=10 interval_seconds=1 backoff_rate=2 max_interval=1h should_retry=isTransient",
		"//dbos:transaction isolation=read_committed read_only",
		`//dbos:step name="a \"quoted\" name" interval=1500ms`,
		"//dbos:step\tname=a\t\tb",
		"//dbos:",
		`//dbos:step name="unterminated`,
		"//dbos:step a==b =c",
		"//dbos:step x=\"\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if !strings.HasPrefix(text, DirectivePrefix) {
			text = DirectivePrefix + text
		}
		d, err := ParseDirective(text)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error is %T, want *SyntaxError", err)
			}
			if se.Offset < 0 || se.Offset > len(text) {
				t.Fatalf("offset %d outside %q", se.Offset, text)
			}
			return
		}
		if !strings.HasPrefix(text[d.KindOffset:], d.Kind) {
			t.Fatalf("kind offset %d does not point at %q in %q", d.KindOffset, d.Kind, text)
		}
		// dbosgen vet recognizes directives on its own (it cannot import
		// this package): it must see the same kind.
		if k := vet.DirectiveKind(text); k != d.Kind {
			t.Fatalf("vet.DirectiveKind(%q) = %q, the parser says %q", text, k, d.Kind)
		}
		for _, a := range d.Args {
			if !strings.HasPrefix(text[a.Offset:], a.Key) {
				t.Fatalf("key offset %d does not point at %q in %q", a.Offset, a.Key, text)
			}
			if a.HasValue && (a.ValueOffset <= a.Offset || a.ValueOffset > len(text)) {
				t.Fatalf("value offset %d of %s out of range in %q", a.ValueOffset, a.Key, text)
			}
		}
		canon := d.String()
		d2, err := ParseDirective(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, text, err)
		}
		if d2.String() != canon || d2.Kind != d.Kind || len(d2.Args) != len(d.Args) {
			t.Fatalf("round trip changed %q: %q -> %q", text, canon, d2.String())
		}
		for i := range d.Args {
			a, b := d.Args[i], d2.Args[i]
			if a.Key != b.Key || a.Value != b.Value || a.HasValue != b.HasValue {
				t.Fatalf("round trip changed argument %d of %q: %+v -> %+v", i, text, a, b)
			}
		}
		// Option decoding must cope with whatever the parser accepts.
		var probs []problem
		switch d.Kind {
		case "step":
			_, probs = parseStepOptions(d)
		case "transaction":
			_, probs = parseTransactionOptions(d)
		case "workflow":
			_, probs = parseWorkflowOptions(d)
		}
		for _, p := range probs {
			if p.off < 0 || p.off > len(text) {
				t.Fatalf("problem offset %d outside %q: %s", p.off, text, p.msg)
			}
		}
	})
}
