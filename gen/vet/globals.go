package vet

import (
	"go/ast"
	"go/token"
	"go/types"
)

// Package-level variables. A workflow may read a variable that only its
// declaration or an init function assigns (a sentinel error, a table, a
// regexp): every process sees the same value. Any other read, and every
// write, is state that a recovered workflow can see differently.

// varFact marks a package-level variable assigned after initialization.
type varFact struct {
	At string // where: "file.go:12"
}

func (*varFact) AFact()           {}
func (f *varFact) String() string { return "assigned at " + f.At }

// packageVar returns obj as a package-level variable, or nil.
func packageVar(obj types.Object) *types.Var {
	v, ok := obj.(*types.Var)
	if !ok || v.IsField() || v.Pkg() == nil || v.Pkg().Scope().Lookup(v.Name()) != v {
		return nil
	}
	return v
}

// rootIdent is the variable an expression that is written to, or whose
// address is taken, belongs to: g in g, g.f, g[i], g.f[i].h, *g, (g).
func rootIdent(info *types.Info, e ast.Expr) *ast.Ident {
	for {
		switch x := e.(type) {
		case *ast.Ident:
			return x
		case *ast.ParenExpr:
			e = x.X
		case *ast.SelectorExpr:
			if sel, ok := info.Selections[x]; ok {
				if sel.Kind() != types.FieldVal {
					return nil
				}
				e = x.X
				continue
			}
			return x.Sel // a qualified identifier: pkg.V
		case *ast.IndexExpr:
			e = x.X
		case *ast.SliceExpr:
			e = x.X
		case *ast.StarExpr:
			e = x.X
		default:
			return nil
		}
	}
}

// writtenIdents returns the identifiers under n that are written: the roots
// of assignments' left sides, of ++ and --, of &x, of range variables
// assigned with =, of delete, clear and copy's first argument, and the
// receivers of pointer methods called on addressable values.
func writtenIdents(info *types.Info, n ast.Node, into map[*ast.Ident]bool) {
	mark := func(e ast.Expr) {
		if id := rootIdent(info, e); id != nil {
			into[id] = true
		}
	}
	// The runtime does not keep or change what it is given: &opts passed
	// to dbosimpl.RunStep is not a write.
	toRuntime := map[*ast.UnaryExpr]bool{}
	ast.Inspect(n, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			if n.Tok != token.DEFINE {
				for _, l := range n.Lhs {
					mark(l)
				}
			}
		case *ast.IncDecStmt:
			mark(n.X)
		case *ast.UnaryExpr:
			if n.Op == token.AND && !toRuntime[n] {
				mark(n.X)
			}
		case *ast.RangeStmt:
			if n.Tok == token.ASSIGN {
				if n.Key != nil {
					mark(n.Key)
				}
				if n.Value != nil {
					mark(n.Value)
				}
			}
		case *ast.CallExpr:
			if fn := staticCallee(info, n); fn != nil && fn.Pkg() != nil && isRuntime(fn.Pkg().Path()) {
				for _, a := range n.Args {
					if u, ok := ast.Unparen(a).(*ast.UnaryExpr); ok && u.Op == token.AND {
						toRuntime[u] = true
					}
				}
			}
			if id, ok := ast.Unparen(n.Fun).(*ast.Ident); ok && len(n.Args) > 0 {
				if b, ok := info.Uses[id].(*types.Builtin); ok {
					switch b.Name() {
					case "delete", "clear", "copy":
						mark(n.Args[0])
					}
				}
			}
			if sel, ok := ast.Unparen(n.Fun).(*ast.SelectorExpr); ok && pointerMethodOnValue(info, sel) {
				mark(sel.X)
			}
		}
		return true
	})
}

// pointerMethodOnValue reports whether sel calls a pointer method on a value,
// which takes the value's address.
func pointerMethodOnValue(info *types.Info, sel *ast.SelectorExpr) bool {
	s, ok := info.Selections[sel]
	if !ok || s.Kind() != types.MethodVal {
		return false
	}
	fn, ok := s.Obj().(*types.Func)
	if !ok {
		return false
	}
	recv := fn.Signature().Recv()
	if recv == nil {
		return false
	}
	if _, ptr := recv.Type().(*types.Pointer); !ptr {
		return false
	}
	// Through embedded pointers the address is not the variable's.
	if s.Indirect() {
		return false
	}
	_, isPtr := s.Recv().Underlying().(*types.Pointer)
	return !isPtr
}

// assignments finds, for every package-level variable the package writes
// outside initialization (variable declarations and init functions), the
// first place it does.
func (c *checker) assignments() {
	c.assigned = map[*types.Var]token.Pos{}
	record := func(id *ast.Ident) {
		v := packageVar(c.info.Uses[id])
		if v == nil {
			return
		}
		if p, ok := c.assigned[v]; !ok || id.Pos() < p {
			c.assigned[v] = id.Pos()
		}
	}
	// Func literals inside initialization run later: their writes count.
	inLiterals := func(n ast.Node) {
		ast.Inspect(n, func(n ast.Node) bool {
			if fl, ok := n.(*ast.FuncLit); ok {
				w := map[*ast.Ident]bool{}
				writtenIdents(c.info, fl.Body, w)
				for id := range w {
					record(id)
				}
				return false
			}
			return true
		})
	}
	for _, f := range c.files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Body == nil {
					continue
				}
				if d.Recv == nil && d.Name.Name == "init" {
					inLiterals(d.Body)
					continue
				}
				w := map[*ast.Ident]bool{}
				writtenIdents(c.info, d.Body, w)
				for id := range w {
					record(id)
				}
			case *ast.GenDecl:
				inLiterals(d)
			}
		}
	}
}

// mutable reports whether v, read by a workflow, can hold another value when
// the workflow is recovered, and where it is assigned.
func (c *checker) mutable(v *types.Var) (string, bool) {
	if p, ok := c.assigned[v]; ok {
		return c.shortPos(p), true
	}
	if v.Pkg() == c.pass.Pkg {
		return "", false
	}
	var f varFact
	if c.pass.ImportObjectFact(v, &f) {
		return f.At, true
	}
	return "", false
}

// funcVars maps package-level variables initialized to a function and never
// assigned again (var now = time.Now) to that function, so that calls
// through them are checked as calls to it.
func (c *checker) funcVarInits() {
	c.funcVars = map[*types.Var]*types.Func{}
	for _, f := range c.files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				if len(vs.Values) != len(vs.Names) {
					continue
				}
				for i, name := range vs.Names {
					v := packageVar(c.info.Defs[name])
					if v == nil {
						continue
					}
					if _, assigned := c.assigned[v]; assigned {
						continue
					}
					var id *ast.Ident
					switch x := ast.Unparen(vs.Values[i]).(type) {
					case *ast.Ident:
						id = x
					case *ast.SelectorExpr:
						id = x.Sel
					}
					if id == nil {
						continue
					}
					if fn, ok := c.info.Uses[id].(*types.Func); ok {
						c.funcVars[v] = fn
					}
				}
			}
		}
	}
}

// varName renders v for messages, qualified when it is another package's.
func (c *checker) varName(v *types.Var) string {
	if v.Pkg() == c.pass.Pkg {
		return v.Name()
	}
	return v.Pkg().Name() + "." + v.Name()
}

// staticCallee is the function or method a call names, if any.
func staticCallee(info *types.Info, call *ast.CallExpr) *types.Func {
	fun := ast.Unparen(call.Fun)
	switch f := fun.(type) {
	case *ast.IndexExpr:
		fun = f.X
	case *ast.IndexListExpr:
		fun = f.X
	}
	switch f := fun.(type) {
	case *ast.Ident:
		fn, _ := info.Uses[f].(*types.Func)
		return fn
	case *ast.SelectorExpr:
		if sel, ok := info.Selections[f]; ok {
			fn, _ := sel.Obj().(*types.Func)
			return fn
		}
		fn, _ := info.Uses[f.Sel].(*types.Func)
		return fn
	}
	return nil
}

// isLogger reports whether t is a *slog.Logger or *log.Logger (or one by
// value): a logger set up by main is read by workflows to log, which never
// changes their path.
func isLogger(t types.Type) bool {
	if p, ok := t.(*types.Pointer); ok {
		t = p.Elem()
	}
	n, ok := types.Unalias(t).(*types.Named)
	if !ok || n.Obj().Pkg() == nil || n.Obj().Name() != "Logger" {
		return false
	}
	path := n.Obj().Pkg().Path()
	return path == "log/slog" || path == "log"
}
