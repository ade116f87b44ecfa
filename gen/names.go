package gen

import (
	"fmt"
	"go/token"
	"go/types"
	"path/filepath"
	"sort"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Import paths the generated code uses besides the user's own types.
const (
	dbosPath    = "github.com/dbosgen/dbosgen/runtime/dbos"
	implPath    = "github.com/dbosgen/dbosgen/runtime/dbosimpl"
	contextPath = "context"
	timePath    = "time"
)

// helperPrefix starts every package-level helper the generated file declares
// besides the wrappers; no hand-written Go looks like this.
const helperPrefix = "dbosgen"

// naming holds the identifiers chosen for one package's generated file.
type naming struct {
	imports map[string]string // import path -> local name in dbos_gen.go
	global  map[string]bool   // package-level names: user's, generated, imports
}

// assignNames gives each Func its generated identifiers and reports those
// that collide with a user declaration or with each other. It returns false
// if any collided.
func assignNames(ds *diags, pkg *Package) bool {
	ok := true
	owner := map[string]*Func{} // package-level (or Recv.method) name -> Func
	claim := func(fn *Func, name string, method bool) {
		key := name
		if method {
			key = fn.Recv.TypeName + "." + name
		}
		if other, dup := owner[key]; dup {
			ds.errorf(fn.dirPos, "generated %s for %s collides with the one generated for %s; rename one of them", describe(fn, name, method), fn.Name, other.Name)
			ok = false
			return
		}
		owner[key] = fn
		if obj := userDecl(pkg, fn, name, method); obj != nil {
			pos := ds.fset.Position(obj.Pos())
			ds.errorf(fn.dirPos, "generated %s for %s collides with %s declared at %s:%d; rename one of them", describe(fn, name, method), fn.Name, name, filepath.Base(pos.Filename), pos.Line)
			ok = false
		}
	}
	for _, fn := range pkg.Funcs {
		key := fn.key()
		names := wrapperNames(fn.Kind, fn.Name)
		fn.Wrapper = names[0]
		if len(names) > 1 {
			fn.Second = names[1]
		}
		if len(names) > 2 {
			fn.Enqueue = names[2]
		}
		switch fn.Kind {
		case KindStep:
			fn.OptionsVar = helperPrefix + "Step_" + key
		case KindTransaction:
			fn.OptionsVar = helperPrefix + "Tx_" + key
		case KindWorkflow:
			fn.OptionsVar = helperPrefix + "Workflow_" + key
			fn.ArgsType = helperPrefix + "Args_" + key
		}
		for _, n := range []string{fn.Wrapper, fn.Second, fn.Enqueue} {
			if n != "" {
				claim(fn, n, fn.Recv != nil)
			}
		}
		// Helpers are package-level even for methods.
		claim(fn, fn.OptionsVar, false)
		if fn.ArgsType != "" {
			claim(fn, fn.ArgsType, false)
		}
	}
	return ok
}

// wrapperNames are the wrappers generated for a function called name: the
// run-and-wait one first, then the async or start one, then (workflows)
// the enqueue one. The wrapper keeps the
// function's exportedness.
func wrapperNames(kind Kind, name string) []string {
	switch kind {
	case KindStep:
		return []string{name + "Step", name + "StepAsync"}
	case KindTransaction:
		return []string{name + "Tx"}
	}
	if token.IsExported(name) {
		return []string{name + "Workflow", "Start" + name + "Workflow", "Enqueue" + name + "Workflow"}
	}
	return []string{name + "Workflow", "start" + upperFirst(name) + "Workflow", "enqueue" + upperFirst(name) + "Workflow"}
}

func describe(fn *Func, name string, method bool) string {
	if method {
		return "method " + fn.Recv.TypeName + "." + name
	}
	return name
}

// userDecl finds a user declaration that a generated name would clash with:
// a package-level object, or a field or method of a method's receiver type.
// The previous dbos_gen.go was hidden while loading, so its declarations do
// not count.
func userDecl(pkg *Package, fn *Func, name string, method bool) types.Object {
	if pkg.Types == nil {
		return nil
	}
	if !method {
		return pkg.Types.Scope().Lookup(name)
	}
	tn, _ := pkg.Types.Scope().Lookup(fn.Recv.TypeName).(*types.TypeName)
	if tn == nil {
		return nil
	}
	obj, _, _ := types.LookupFieldOrMethod(types.NewPointer(tn.Type()), true, pkg.Types, name)
	return obj
}

// chooseImports names every package the generated file refers to. A name
// that a package-level identifier of the user's package already takes
// (a func called "time", say) would not compile, so such imports get an
// alias; our own imports are named first so they keep their natural names.
func chooseImports(pkg *Package) *naming {
	nm := &naming{imports: map[string]string{}, global: map[string]bool{}}
	for n := range pkg.scope {
		nm.global[n] = true
	}
	for _, fn := range pkg.Funcs {
		for _, n := range []string{fn.Wrapper, fn.Second, fn.Enqueue, fn.OptionsVar, fn.ArgsType} {
			if n != "" {
				nm.global[n] = true
			}
		}
	}
	own := []string{contextPath, dbosPath, implPath, sqlxPath, timePath}
	names := map[string]string{contextPath: "context", dbosPath: "dbos", implPath: "dbosimpl", sqlxPath: "sqlx", timePath: "time"}
	seen := map[string]bool{}
	var others []string
	for _, fn := range pkg.Funcs {
		for _, p := range fn.Params {
			typePackages(p.Type, pkg.Types, names, seen, &others)
		}
		if fn.Result != nil {
			typePackages(fn.Result, pkg.Types, names, seen, &others)
		}
	}
	sort.Strings(others)
	for _, path := range append(own, others...) {
		if path == pkg.Path {
			continue
		}
		name := names[path]
		alias := name
		for i := 2; nm.global[alias] || isUniverse(alias); i++ {
			alias = name + strconv.Itoa(i)
		}
		nm.imports[path] = alias
		nm.global[alias] = true
	}
	return nm
}

// typePackages records the packages named by t (other than from).
func typePackages(t types.Type, from *types.Package, names map[string]string, seen map[string]bool, out *[]string) {
	add := func(p *types.Package) {
		if p == nil || p == from {
			return
		}
		if _, ok := names[p.Path()]; !ok {
			names[p.Path()] = p.Name()
		}
		if !seen[p.Path()] {
			seen[p.Path()] = true
			if p.Path() != contextPath && p.Path() != dbosPath && p.Path() != implPath && p.Path() != sqlxPath && p.Path() != timePath {
				*out = append(*out, p.Path())
			}
		}
	}
	var walk func(t types.Type)
	walkTuple := func(tu *types.Tuple) {
		for i := 0; i < tu.Len(); i++ {
			walk(tu.At(i).Type())
		}
	}
	done := map[types.Type]bool{}
	walk = func(t types.Type) {
		if done[t] {
			return
		}
		done[t] = true
		switch u := t.(type) {
		case *types.Alias:
			add(u.Obj().Pkg())
			for i := 0; i < u.TypeArgs().Len(); i++ {
				walk(u.TypeArgs().At(i))
			}
		case *types.Named:
			add(u.Obj().Pkg())
			for i := 0; i < u.TypeArgs().Len(); i++ {
				walk(u.TypeArgs().At(i))
			}
		case *types.Basic:
			if u.Kind() == types.UnsafePointer {
				add(types.Unsafe)
			}
		case *types.Pointer:
			walk(u.Elem())
		case *types.Slice:
			walk(u.Elem())
		case *types.Array:
			walk(u.Elem())
		case *types.Chan:
			walk(u.Elem())
		case *types.Map:
			walk(u.Key())
			walk(u.Elem())
		case *types.Signature:
			walkTuple(u.Params())
			walkTuple(u.Results())
		case *types.Struct:
			for i := 0; i < u.NumFields(); i++ {
				walk(u.Field(i).Type())
			}
		case *types.Interface:
			for i := 0; i < u.NumEmbeddeds(); i++ {
				walk(u.EmbeddedType(i))
			}
			for i := 0; i < u.NumExplicitMethods(); i++ {
				walk(u.ExplicitMethod(i).Type())
			}
		}
	}
	walk(t)
}

func isUniverse(name string) bool { return types.Universe.Lookup(name) != nil }

// locals picks the names used inside fn's wrappers. A wrapper's body refers
// to the generated file's imports, the user's function and types, and the
// helpers, so a parameter may not take any package-level name (a parameter
// called "time" would shadow the time import, one called like the function
// would shadow the call) nor a predeclared one (a parameter called "error"
// would break the closure's result type). Such parameters, and unnamed or
// blank ones, are renamed; only the wrapper sees these names.
func (nm *naming) locals(fn *Func) {
	taken := map[string]bool{}
	fresh := func(base string) string {
		free := func(n string) bool { return !nm.global[n] && !isUniverse(n) && !taken[n] && !token.IsKeyword(n) }
		name := base
		if !free(name) {
			name = base + "_"
		}
		for i := 2; !free(name); i++ {
			name = base + strconv.Itoa(i)
		}
		taken[name] = true
		return name
	}
	fn.ctxName = fresh("ctx")
	if fn.Recv != nil {
		base := fn.Recv.Name
		if base == "" || base == "_" {
			r, _ := utf8.DecodeRuneInString(fn.Recv.TypeName)
			base = string(unicode.ToLower(r))
		}
		fn.Recv.Local = fresh(base)
	}
	fields := map[string]bool{}
	for i, p := range fn.Params {
		base := p.Name
		if base == "" || base == "_" {
			base = fmt.Sprintf("arg%d", i)
		}
		p.Local = fresh(base)
		if fn.Kind == KindWorkflow {
			field := upperFirst(base)
			if !token.IsExported(field) {
				field = "X" + field // e.g. a parameter named _x or with a non-letter start
			}
			for j := 2; fields[field]; j++ {
				field = upperFirst(base) + strconv.Itoa(j)
			}
			fields[field] = true
			p.Field, p.JSONKey = field, base
		}
	}
	fn.txName = fresh("tx")
	fn.errName = fresh("err")
	fn.queueName = fresh("queue")
}

func upperFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}
