package vet

import (
	"cmp"
	"fmt"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Finding is one nondeterministic operation reachable from a workflow.
type Finding struct {
	Pos     token.Position // Filename is absolute
	Kind    Kind
	Message string // what happens, and what to do instead
	// Chain names the workflow, then each function called on the way to
	// the one holding the finding; empty for malformed allows.
	Chain []string
}

// Text is the message with the chain of calls: "... (workflow a → b)".
func (f Finding) Text() string {
	if len(f.Chain) == 0 {
		return f.Message
	}
	return f.Message + " (workflow " + strings.Join(f.Chain, " → ") + ")"
}

// Format renders f as "file:line:col: text", the file relative to dir when
// it lies inside it.
func (f Finding) Format(dir string) string {
	name := f.Pos.Filename
	if dir != "" {
		if rel, err := filepath.Rel(dir, name); err == nil && !strings.HasPrefix(rel, "..") {
			name = rel
		}
	}
	return fmt.Sprintf("%s:%d:%d: %s", name, f.Pos.Line, f.Pos.Column, f.Text())
}

func (f Finding) String() string { return f.Format("") }

func positionLess(a, b token.Position) bool { return comparePositions(a, b) < 0 }

func comparePositions(a, b token.Position) int {
	return cmp.Or(
		cmp.Compare(a.Filename, b.Filename),
		cmp.Compare(a.Line, b.Line),
		cmp.Compare(a.Column, b.Column),
	)
}

// sortFindings orders by position, then message, then chain.
func sortFindings(list []Finding) {
	slices.SortStableFunc(list, func(a, b Finding) int {
		return cmp.Or(
			comparePositions(a.Pos, b.Pos),
			cmp.Compare(a.Message, b.Message),
			cmp.Compare(len(a.Chain), len(b.Chain)),
			cmp.Compare(strings.Join(a.Chain, " "), strings.Join(b.Chain, " ")),
		)
	})
}

// dedupe sorts list and keeps one finding per position and message: the
// one with the shortest chain (then the first in order). One helper reached
// from many workflows is one thing to fix.
func dedupe(list []Finding) []Finding {
	sortFindings(list)
	return slices.CompactFunc(list, func(a, b Finding) bool {
		return a.Pos == b.Pos && a.Message == b.Message
	})
}

func itoa(n int) string { return strconv.Itoa(n) }
