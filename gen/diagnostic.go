package gen

import (
	"cmp"
	"fmt"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
)

// Severity tells errors, which stop generation, from warnings, which do not.
type Severity int

const (
	SeverityError Severity = iota
	SeverityWarning
)

// Diagnostic is one positioned message about the user's code.
type Diagnostic struct {
	Pos      token.Position // Filename is absolute
	Severity Severity
	Message  string
}

// Format renders d as "file:line:col: message" (warnings say so), with the
// file name relative to dir when it lies inside it, the way go build and
// go vet print positions.
func (d Diagnostic) Format(dir string) string {
	name := d.Pos.Filename
	if dir != "" {
		if rel, err := filepath.Rel(dir, name); err == nil && !strings.HasPrefix(rel, "..") {
			name = rel
		}
	}
	msg := d.Message
	if d.Severity == SeverityWarning {
		msg = "warning: " + msg
	}
	switch {
	case name == "":
		return msg
	case d.Pos.Line == 0:
		return fmt.Sprintf("%s: %s", name, msg)
	case d.Pos.Column == 0:
		return fmt.Sprintf("%s:%d: %s", name, d.Pos.Line, msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", name, d.Pos.Line, d.Pos.Column, msg)
}

func (d Diagnostic) String() string { return d.Format("") }

// diags accumulates diagnostics; every stage appends and carries on, so the
// user gets all problems from one run.
type diags struct {
	fset *token.FileSet
	list []Diagnostic
}

func (ds *diags) errorf(pos token.Pos, format string, args ...any) {
	ds.list = append(ds.list, Diagnostic{Pos: ds.fset.Position(pos), Message: fmt.Sprintf(format, args...)})
}

func (ds *diags) warnf(pos token.Pos, format string, args ...any) {
	ds.list = append(ds.list, Diagnostic{Pos: ds.fset.Position(pos), Severity: SeverityWarning, Message: fmt.Sprintf(format, args...)})
}

func (ds *diags) add(d Diagnostic) { ds.list = append(ds.list, d) }

// sortDiagnostics orders by file, line, column and removes exact duplicates
// (go/packages may report one list error on several packages).
func sortDiagnostics(list []Diagnostic) []Diagnostic {
	slices.SortStableFunc(list, func(a, b Diagnostic) int {
		return cmp.Or(
			cmp.Compare(a.Pos.Filename, b.Pos.Filename),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Column, b.Pos.Column),
			cmp.Compare(a.Message, b.Message),
		)
	})
	return slices.CompactFunc(list, func(a, b Diagnostic) bool {
		return a.Pos == b.Pos && a.Message == b.Message && a.Severity == b.Severity
	})
}

// HasErrors reports whether list holds an error (not just warnings).
func HasErrors(list []Diagnostic) bool {
	for _, d := range list {
		if d.Severity == SeverityError {
			return true
		}
	}
	return false
}
