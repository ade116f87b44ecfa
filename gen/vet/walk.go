package vet

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
)

// fnode is one function declared in the package being analyzed.
type fnode struct {
	obj     *types.Func
	decl    *ast.FuncDecl
	kind    string // kindWorkflow, kindStep, kindTransaction, kindWrapper or ""
	trusted bool   // its doc comment carries a //dbos:allow

	effects  []effect    // what it does itself, less what allow comments cover
	calls    []edge      // calls followed into the module's functions
	allCalls []edge      // every call into the module, allowed or not: for durable
	durable  bool        // reaches a step, transaction or other recorded operation
	ranges   []*mapRange // its loops over maps
}

// effect is one nondeterministic operation in a function's own body.
type effect struct {
	pos  token.Pos
	kind Kind
	msg  string
}

// edge is a call into a function of the module: declared in this package
// (local) or summarized by a fact of another one.
type edge struct {
	pos   token.Pos
	local *fnode
	fact  *funcFact
	obj   *types.Func
}

func (e edge) durable() bool {
	if e.local != nil {
		return e.local.durable
	}
	return e.fact.Durable
}

// mapRange is a loop over a map; it is a finding when its body reaches a
// recorded operation, directly or through the calls it makes.
type mapRange struct {
	pos     token.Pos
	durable bool
	calls   []edge
}

// walker collects what one function's body does.
type walker struct {
	c     *checker
	n     *fnode
	loops []*mapRange // the map loops enclosing the current node
	// handled are package-level variables already reported as part of a
	// call on them (mu.Lock()): not reported again as variable reads.
	handled map[*ast.Ident]bool
}

func (c *checker) walkFunc(n *fnode) {
	w := &walker{c: c, n: n, handled: map[*ast.Ident]bool{}}
	w.walk(n.decl.Body)
}

func (w *walker) walk(root ast.Node) {
	if root == nil {
		return
	}
	ast.Inspect(root, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			// The goroutine's body is not the workflow's; the statement is
			// the finding.
			w.effect(n.Go, KindGoroutine, goStmtMsg)
			return false
		case *ast.SelectStmt:
			w.effect(n.Select, KindSelect, selectMsg)
		case *ast.RangeStmt:
			w.rangeStmt(n)
			return false
		case *ast.CallExpr:
			return w.call(n)
		case *ast.Ident:
			w.ident(n)
		}
		return true
	})
}

func (w *walker) effect(pos token.Pos, kind Kind, msg string) {
	if w.n.trusted || w.c.allow.covers(pos) {
		return
	}
	w.n.effects = append(w.n.effects, effect{pos, kind, msg})
}

// durableHere records a call of a recorded operation at the current point.
func (w *walker) durableHere() {
	w.n.durable = true
	for _, l := range w.loops {
		l.durable = true
	}
}

func (w *walker) rangeStmt(rs *ast.RangeStmt) {
	w.walk(rs.Key)
	w.walk(rs.Value)
	w.walk(rs.X)
	if !w.isMapRange(rs) {
		w.walk(rs.Body)
		return
	}
	l := &mapRange{pos: rs.For}
	w.n.ranges = append(w.n.ranges, l)
	w.loops = append(w.loops, l)
	w.walk(rs.Body)
	w.loops = w.loops[:len(w.loops)-1]
}

// isMapRange reports whether rs iterates over a map in map order: a map, or
// maps.Keys, maps.Values or maps.All of one.
func (w *walker) isMapRange(rs *ast.RangeStmt) bool {
	if t := w.c.info.TypeOf(rs.X); t != nil {
		if _, ok := t.Underlying().(*types.Map); ok {
			return true
		}
	}
	if call, ok := ast.Unparen(rs.X).(*ast.CallExpr); ok {
		if fn := w.c.callee(call); fn != nil && fn.Pkg() != nil && fn.Pkg().Path() == "maps" {
			switch fn.Name() {
			case "Keys", "Values", "All":
				return true
			}
		}
	}
	return false
}

// call handles one call; it returns whether the walk should descend into
// the call's children (false when it walked them itself).
func (w *walker) call(call *ast.CallExpr) bool {
	fn := w.c.callee(call)
	if fn == nil {
		if w.c.unresolved(call) {
			// A wrapper not generated yet: while generating, the previous
			// dbos_gen.go is hidden and calls to wrappers do not resolve.
			w.durableHere()
		}
		return true
	}
	fn = fn.Origin()
	if fn.Pkg() != nil && isRuntime(fn.Pkg().Path()) {
		// Safe by construction. Func literals passed to the runtime are
		// steps and transactions (RunStep, RunTransaction): not checked.
		if isDurableRuntime(fn) {
			w.durableHere()
		}
		w.walk(call.Fun)
		for _, a := range call.Args {
			if _, lit := ast.Unparen(a).(*ast.FuncLit); !lit {
				w.walk(a)
			}
		}
		return false
	}
	if n := w.c.funcs[fn]; n != nil {
		w.moduleCall(call, fn, n.kind, edge{pos: call.Pos(), local: n, obj: fn})
		return true
	}
	if f := w.c.importFact(fn); f != nil {
		w.moduleCall(call, fn, f.Kind, edge{pos: call.Pos(), fact: f, obj: fn})
		return true
	}
	if r, ok := classify(fn); ok {
		w.effect(call.Pos(), r.kind, w.callMessage(call, fn, r))
	}
	return true
}

// moduleCall records a call into a function of the module.
func (w *walker) moduleCall(call *ast.CallExpr, fn *types.Func, kind string, e edge) {
	switch kind {
	case kindWrapper:
		w.durableHere()
		return
	case kindStep, kindTransaction:
		what := "step"
		if kind == kindTransaction {
			what = "transaction"
		}
		wrapper := wrapperName(kind, fn.Name())
		if fn.Pkg() != w.c.pass.Pkg && fn.Signature().Recv() == nil {
			wrapper = fn.Pkg().Name() + "." + wrapper
		}
		w.effect(call.Pos(), KindDirectCall, fmt.Sprintf(directCallMsg, what, w.c.funcName(fn), wrapper))
		return
	}
	w.n.allCalls = append(w.n.allCalls, e)
	for _, l := range w.loops {
		l.calls = append(l.calls, e)
	}
	if !w.n.trusted && !w.c.allow.covers(call.Pos()) {
		w.n.calls = append(w.n.calls, e)
	}
}

// callMessage words a call finding; a sync method called on a package-level
// variable names the variable, which is then not reported again.
func (w *walker) callMessage(call *ast.CallExpr, fn *types.Func, r reason) string {
	instead := r.instead
	if r == clockWait && w.c.hasSleep {
		instead = sleepAdvice
	}
	name := calleeName(fn)
	if sel, ok := ast.Unparen(call.Fun).(*ast.SelectorExpr); ok && fn.Signature().Recv() != nil {
		if id := rootIdent(w.c.info, sel.X); id != nil {
			if v := packageVar(w.c.info.Uses[id]); v != nil {
				w.handled[id] = true
				name += " on package-level variable " + w.c.varName(v)
			}
		}
	}
	return fmt.Sprintf("%s %s: %s", name, r.does, instead)
}

// ident reports reads and writes of package-level variables.
func (w *walker) ident(id *ast.Ident) {
	v := packageVar(w.c.info.Uses[id])
	if v == nil || w.handled[id] {
		return
	}
	if w.c.written[id] {
		w.effect(id.Pos(), KindPackageVar, fmt.Sprintf(varWriteMsg, w.c.varName(v)))
		return
	}
	if r, ok := varRules[v.Pkg().Path()+"."+v.Name()]; ok {
		w.effect(id.Pos(), r.kind, fmt.Sprintf("%s %s: %s", w.c.varName(v), r.does, r.instead))
		return
	}
	if at, ok := w.c.mutable(v); ok && !isLogger(v.Type()) {
		w.effect(id.Pos(), KindPackageVar, fmt.Sprintf(varReadMsg, w.c.varName(v), at))
	}
}

// callee is the function a call calls, when it is known statically: a
// function, a method of a concrete type, a method of an interface (whose
// package classifies it), or a package-level variable initialized to a
// function and never assigned (var now = time.Now).
func (c *checker) callee(call *ast.CallExpr) *types.Func {
	if fn := staticCallee(c.info, call); fn != nil {
		return fn
	}
	var id *ast.Ident
	switch f := ast.Unparen(call.Fun).(type) {
	case *ast.Ident:
		id = f
	case *ast.SelectorExpr:
		id = f.Sel
	}
	if v := packageVar(c.info.Uses[id]); v != nil {
		return c.funcVars[v]
	}
	return nil
}

// unresolved reports whether call names a function the type checker could
// not find.
func (c *checker) unresolved(call *ast.CallExpr) bool {
	var id *ast.Ident
	switch f := ast.Unparen(call.Fun).(type) {
	case *ast.Ident:
		id = f
	case *ast.SelectorExpr:
		if _, ok := c.info.Selections[f]; ok {
			return false
		}
		id = f.Sel
	default:
		return false
	}
	if c.info.Uses[id] != nil {
		return false
	}
	tv, ok := c.info.Types[call.Fun]
	return !ok || tv.Type == nil || tv.Type == types.Typ[types.Invalid]
}
