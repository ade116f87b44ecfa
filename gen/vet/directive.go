package vet

import (
	"go/ast"
	"path/filepath"
	"strings"
)

// The directives and the generated file, as the generator defines them
// (package gen imports this package, so it cannot be imported here; gen's
// tests check that the two agree).
const (
	// GeneratedFile is the name of the file dbosgen writes in a package.
	GeneratedFile = "dbos_gen.go"
	// AllowDirective silences a finding: //dbos:allow <reason>.
	AllowDirective = "//dbos:allow"

	directivePrefix = "//dbos:"
)

// Kinds of annotated functions, and "wrapper" for the functions of a
// generated file.
const (
	kindWorkflow    = "workflow"
	kindStep        = "step"
	kindTransaction = "transaction"
	kindWrapper     = "wrapper"
)

// DirectiveKind returns the kind of a //dbos: comment ("workflow", "step",
// "transaction", "allow", or whatever word follows the prefix), "" when text
// is not one.
func DirectiveKind(text string) string {
	rest, ok := strings.CutPrefix(text, directivePrefix)
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, " \t\r\n\v\f"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// IsAllow reports whether a comment is a //dbos:allow directive, with or
// without its reason.
func IsAllow(text string) bool { return DirectiveKind(text) == "allow" }

// funcKind is the directive kind of an annotated function, "" for others.
func funcKind(fd *ast.FuncDecl) string {
	if fd.Doc == nil {
		return ""
	}
	for _, c := range fd.Doc.List {
		switch k := DirectiveKind(c.Text); k {
		case kindWorkflow, kindStep, kindTransaction:
			return k
		}
	}
	return ""
}

// isGenerated reports whether f, named filename, is a dbos_gen.go written by
// dbosgen: its functions are the wrappers.
func isGenerated(f *ast.File, filename string) bool {
	return filepath.Base(filename) == GeneratedFile && ast.IsGenerated(f)
}

// hasWorkflow reports whether any of files declares a workflow.
func hasWorkflow(files []*ast.File) bool {
	for _, f := range files {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && funcKind(fd) == kindWorkflow {
				return true
			}
		}
	}
	return false
}

// wrapperName is the generated wrapper to call instead of an annotated step
// or transaction (gen/names.go).
func wrapperName(kind, name string) string {
	if kind == kindTransaction {
		return name + "Tx"
	}
	return name + "Step"
}
