package gen

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
	"testing"

	"github.com/dbosgen/dbosgen/gen/vet"
)

// TestVetKnowsTheGeneratedFile checks what dbosgen vet (gen/vet, which this
// package imports and so cannot be imported by) assumes of the generator:
// the generated file's name and header, which make its functions wrappers,
// and the allow directive's prefix.
func TestVetKnowsTheGeneratedFile(t *testing.T) {
	if vet.GeneratedFile != OutputName {
		t.Errorf("vet.GeneratedFile = %q, OutputName = %q", vet.GeneratedFile, OutputName)
	}
	f, err := parser.ParseFile(token.NewFileSet(), OutputName, Header+"\n\npackage p\n", parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	if !ast.IsGenerated(f) {
		t.Errorf("a file starting with %q is not generated code to go/ast, which vet relies on", Header)
	}
	if !strings.HasPrefix(vet.AllowDirective, DirectivePrefix) || !vet.IsAllow(vet.AllowDirective+" reason") {
		t.Errorf("vet.AllowDirective = %q", vet.AllowDirective)
	}
}
