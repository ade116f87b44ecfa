package vet

import (
	"go/ast"
	"go/token"
	"go/types"
	"path/filepath"
	"reflect"
	"sort"

	"golang.org/x/tools/go/analysis"
)

// Analyzer checks the workflows of one package, using the facts its imports
// exported about their functions and variables, and exports its own.
// Its result is a *Result. Check and Run drive it over a module.
var Analyzer = &analysis.Analyzer{
	Name:             "dbosvet",
	Doc:              "report nondeterminism reachable from //dbos:workflow bodies outside steps and transactions",
	URL:              "https://github.com/dbosgen/dbosgen#determinism-dbosgen-vet",
	Run:              run,
	RunDespiteErrors: true, // while generating, calls to wrappers not generated yet do not resolve
	FactTypes:        []analysis.Fact{new(funcFact), new(varFact)},
	ResultType:       reflect.TypeFor[*Result](),
}

// Result is what the analyzer finds in one package: its workflows' findings
// (which may lie in other packages' files) and its malformed allows.
type Result struct {
	Findings []Finding
}

// funcFact summarizes a function of the module for the packages that call
// it.
type funcFact struct {
	Kind    string   // kindWorkflow, kindStep, kindTransaction, kindWrapper or ""
	Durable bool     // reaches a recorded operation
	Effects []Effect // what it reaches outside steps and transactions
}

func (*funcFact) AFact() {}

func (f *funcFact) String() string {
	return f.Kind + " durable=" + map[bool]string{true: "true", false: "false"}[f.Durable]
}

// Effect is one nondeterministic operation a function reaches, and the
// chain of calls from that function (first) to the one doing it (last).
type Effect struct {
	Pos     token.Position
	Kind    Kind
	Message string
	Chain   []Link
}

// Link is one function of a chain.
type Link struct {
	PkgPath, PkgName string
	Name             string // "F" or, for a method, "T.M"
}

// checker holds the analysis of one package.
type checker struct {
	pass     *analysis.Pass
	info     *types.Info
	files    []*ast.File // the user's files: not the generated one
	allow    *allowed
	hasSleep bool // the runtime has dbos.Sleep, to suggest it

	funcs    map[*types.Func]*fnode
	nodes    []*fnode // in source order
	written  map[*ast.Ident]bool
	assigned map[*types.Var]token.Pos
	funcVars map[*types.Var]*types.Func
	facts    map[*types.Func]*funcFact // imported, cached; nil when absent
}

func run(pass *analysis.Pass) (any, error) {
	c := &checker{
		pass:  pass,
		info:  pass.TypesInfo,
		funcs: map[*types.Func]*fnode{},
		facts: map[*types.Func]*funcFact{},
	}
	c.index()
	c.assignments()
	c.funcVarInits()
	for v, p := range c.assigned {
		if v.Pkg() == pass.Pkg {
			pass.ExportObjectFact(v, &varFact{At: c.shortPos(p)})
		}
	}
	for _, n := range c.nodes {
		switch n.kind {
		case kindWrapper:
			n.durable = true
		case kindStep, kindTransaction:
			// Not checked: that is where nondeterminism belongs.
		default:
			c.walkFunc(n)
		}
	}
	c.propagateDurable()
	c.mapOrder()

	res := &Result{}
	for _, n := range c.nodes {
		var effects []Effect
		if n.kind == "" || n.kind == kindWorkflow {
			effects = c.summarize(n)
		}
		if n.kind != "" || n.durable || len(effects) > 0 {
			pass.ExportObjectFact(n.obj, &funcFact{Kind: n.kind, Durable: n.durable, Effects: effects})
		}
		if n.kind == kindWorkflow {
			for _, e := range effects {
				res.Findings = append(res.Findings, c.finding(e))
			}
		}
	}
	for _, p := range c.allow.bad {
		res.Findings = append(res.Findings, Finding{Pos: pass.Fset.Position(p), Kind: KindAllow, Message: allowMsg})
	}
	sortFindings(res.Findings)
	return res, nil
}

// index finds the package's functions, its generated file, its allows and
// its writes.
func (c *checker) index() {
	var all []*ast.File
	for _, f := range c.pass.Files {
		name := c.pass.Fset.File(f.Pos()).Name()
		generated := isGenerated(f, name)
		if !generated {
			c.files = append(c.files, f)
		}
		all = append(all, f)
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			obj, ok := c.info.Defs[fd.Name].(*types.Func)
			if !ok {
				continue
			}
			n := &fnode{obj: obj, decl: fd, kind: funcKind(fd), trusted: trusts(fd)}
			if generated {
				n.kind, n.trusted = kindWrapper, true
			}
			c.funcs[obj] = n
			c.nodes = append(c.nodes, n)
		}
	}
	c.allow = indexAllows(c.pass.Fset, c.files)
	c.written = map[*ast.Ident]bool{}
	for _, f := range c.files {
		writtenIdents(c.info, f, c.written)
	}
	if dbos := findImport(c.pass.Pkg, dbosPath, map[*types.Package]bool{}); dbos != nil {
		_, c.hasSleep = dbos.Scope().Lookup("Sleep").(*types.Func)
	}
}

// findImport finds the package with the given path among pkg's imports,
// transitively.
func findImport(pkg *types.Package, path string, seen map[*types.Package]bool) *types.Package {
	if pkg == nil || seen[pkg] {
		return nil
	}
	seen[pkg] = true
	if pkg.Path() == path {
		return pkg
	}
	for _, imp := range pkg.Imports() {
		if p := findImport(imp, path, seen); p != nil {
			return p
		}
	}
	return nil
}

// importFact returns the summary another package exported for fn, or nil.
func (c *checker) importFact(fn *types.Func) *funcFact {
	if f, ok := c.facts[fn]; ok {
		return f
	}
	var f *funcFact
	if fn.Pkg() != nil && fn.Pkg() != c.pass.Pkg {
		f = new(funcFact)
		if !c.pass.ImportObjectFact(fn, f) {
			f = nil
		}
	}
	c.facts[fn] = f
	return f
}

// propagateDurable marks the functions that reach a recorded operation
// through the module's functions.
func (c *checker) propagateDurable() {
	for changed := true; changed; {
		changed = false
		for _, n := range c.nodes {
			if n.durable {
				continue
			}
			for _, e := range n.allCalls {
				if e.durable() {
					n.durable, changed = true, true
					break
				}
			}
		}
	}
}

// mapOrder turns the map loops that reach recorded operations into effects.
func (c *checker) mapOrder() {
	for _, n := range c.nodes {
		for _, l := range n.ranges {
			durable := l.durable
			for _, e := range l.calls {
				durable = durable || e.durable()
			}
			if durable && !n.trusted && !c.allow.covers(l.pos) {
				n.effects = append(n.effects, effect{l.pos, KindMapOrder, mapOrderMsg})
			}
		}
	}
}

// summarize collects what root reaches, each with the shortest chain of
// calls from root (breadth first; ties go to the first call in source
// order).
func (c *checker) summarize(root *fnode) []Effect {
	type key struct {
		pos token.Position
		msg string
	}
	best := map[key]Effect{}
	add := func(e Effect) {
		k := key{e.Pos, e.Message}
		if old, ok := best[k]; !ok || len(e.Chain) < len(old.Chain) {
			best[k] = e
		}
	}
	type item struct {
		n     *fnode
		chain []Link
	}
	seen := map[*fnode]bool{root: true}
	queue := []item{{root, []Link{c.link(root.obj)}}}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		for _, e := range it.n.effects {
			add(Effect{Pos: c.pass.Fset.Position(e.pos), Kind: e.kind, Message: e.msg, Chain: it.chain})
		}
		for _, ed := range it.n.calls {
			if ed.local != nil {
				if !seen[ed.local] {
					seen[ed.local] = true
					queue = append(queue, item{ed.local, append(append([]Link(nil), it.chain...), c.link(ed.local.obj))})
				}
				continue
			}
			for _, e := range ed.fact.Effects {
				add(Effect{Pos: e.Pos, Kind: e.Kind, Message: e.Message, Chain: append(append([]Link(nil), it.chain...), e.Chain...)})
			}
		}
	}
	out := make([]Effect, 0, len(best))
	for _, e := range best {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Pos != b.Pos {
			return positionLess(a.Pos, b.Pos)
		}
		return a.Message < b.Message
	})
	return out
}

// link names fn in a chain.
func (c *checker) link(fn *types.Func) Link {
	l := Link{Name: fn.Name()}
	if fn.Pkg() != nil {
		l.PkgPath, l.PkgName = fn.Pkg().Path(), fn.Pkg().Name()
	}
	if r := recvName(fn); r != "" {
		l.Name = r + "." + fn.Name()
	}
	return l
}

// funcName renders a module function for messages, qualified when it is
// another package's.
func (c *checker) funcName(fn *types.Func) string {
	l := c.link(fn)
	if l.PkgPath == c.pass.Pkg.Path() {
		return l.Name
	}
	return l.PkgName + "." + l.Name
}

// finding renders one of a workflow's effects: the chain names functions
// of the workflow's package plainly and others qualified.
func (c *checker) finding(e Effect) Finding {
	f := Finding{Pos: e.Pos, Kind: e.Kind, Message: e.Message}
	for _, l := range e.Chain {
		name := l.Name
		if l.PkgPath != c.pass.Pkg.Path() {
			name = l.PkgName + "." + name
		}
		f.Chain = append(f.Chain, name)
	}
	return f
}

// shortPos renders a position as "file.go:12", for messages.
func (c *checker) shortPos(p token.Pos) string {
	pos := c.pass.Fset.Position(p)
	return filepath.Base(pos.Filename) + ":" + itoa(pos.Line)
}
