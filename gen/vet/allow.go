package vet

import (
	"go/ast"
	"go/token"
	"strings"
)

// allowed indexes the //dbos:allow comments of a package: the lines they
// cover, per file, and the malformed ones.
type allowed struct {
	fset  *token.FileSet
	lines map[string]map[int]bool // file name -> covered lines
	bad   []token.Pos             // allows without a reason
}

// allowReason returns the reason of a //dbos:allow comment and whether text
// is one.
func allowReason(text string) (string, bool) {
	if !IsAllow(text) {
		return "", false
	}
	return strings.TrimSpace(text[len(AllowDirective):]), true
}

func indexAllows(fset *token.FileSet, files []*ast.File) *allowed {
	a := &allowed{fset: fset, lines: map[string]map[int]bool{}}
	for _, f := range files {
		var code map[int]int
		for _, g := range f.Comments {
			for _, c := range g.List {
				reason, ok := allowReason(c.Text)
				if !ok {
					continue
				}
				if reason == "" {
					a.bad = append(a.bad, c.Slash)
					continue
				}
				// A comment after code covers its own line; a comment on a
				// line of its own covers the next one.
				p := fset.Position(c.Slash)
				m := a.lines[p.Filename]
				if m == nil {
					m = map[int]bool{}
					a.lines[p.Filename] = m
				}
				if code == nil {
					code = codeStarts(fset, f)
				}
				if col, ok := code[p.Line]; ok && col < p.Column {
					m[p.Line] = true
				} else {
					m[p.Line+1] = true
				}
			}
		}
	}
	return a
}

// covers reports whether an allow comment covers the line of pos.
func (a *allowed) covers(pos token.Pos) bool {
	p := a.fset.Position(pos)
	return a.lines[p.Filename][p.Line]
}

// trusts reports whether fd's doc comment carries a //dbos:allow with a
// reason: nothing in the function, or reached from it, is reported.
func trusts(fd *ast.FuncDecl) bool {
	if fd.Doc == nil {
		return false
	}
	for _, c := range fd.Doc.List {
		if reason, ok := allowReason(c.Text); ok && reason != "" {
			return true
		}
	}
	return false
}

// codeStarts maps each line of f holding code to the column where the code
// starts (or, for a line that only ends a construct, where it ends).
func codeStarts(fset *token.FileSet, f *ast.File) map[int]int {
	m := map[int]int{}
	note := func(p token.Position) {
		if col, ok := m[p.Line]; !ok || p.Column < col {
			m[p.Line] = p.Column
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n.(type) {
		case nil, *ast.Comment, *ast.CommentGroup:
			return false
		}
		note(fset.Position(n.Pos()))
		end := fset.Position(n.End())
		end.Column-- // End is just past the last character
		note(end)
		return true
	})
	return m
}
