package gen

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/tools/go/packages"

	"github.com/dbosgen/dbosgen/gen/vet"
)

// spacedRE matches "// dbos:step" and friends: a directive someone wrote as
// prose. Go only treats "//word:" without a space as a directive, and gofmt
// would leave it in the doc comment, so it silently does nothing: warn.
var spacedRE = regexp.MustCompile(`^//\s+dbos:(workflow|step|transaction|allow)\b`)

// collector builds the model of one package, appending every problem it finds
// to ds rather than stopping at the first.
type collector struct {
	ds   *diags
	pkg  *packages.Package
	info *types.Info
	out  *Package
	skip string // the overlaid dbos_gen.go, which holds nothing of the user's
}

// collect finds the directives of p and builds its model.
func collect(ds *diags, p *packages.Package, skip string) *Package {
	c := &collector{ds: ds, pkg: p, info: p.TypesInfo, skip: skip}
	c.out = &Package{Path: p.PkgPath, Name: p.Name, Types: p.Types, scope: map[string]bool{}}
	if len(p.GoFiles) > 0 {
		c.out.Dir = filepath.Dir(p.GoFiles[0])
	}
	if p.Types != nil {
		for _, n := range p.Types.Scope().Names() {
			c.out.scope[n] = true
		}
	}
	for _, f := range p.Syntax {
		if ds.fset.File(f.Pos()).Name() == skip {
			continue
		}
		c.file(f)
	}
	return c.out
}

// file handles one source file: every //dbos: comment must belong to the doc
// comment of a function; each function carries at most one.
func (c *collector) file(f *ast.File) {
	owner := map[*ast.Comment]*ast.FuncDecl{}
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Doc != nil {
			for _, cm := range fd.Doc.List {
				owner[cm] = fd
			}
		}
	}
	found := map[*ast.FuncDecl][]*ast.Comment{}
	for _, g := range f.Comments {
		for _, cm := range g.List {
			switch {
			case vet.IsAllow(cm.Text):
				// dbosgen vet's (gen/vet): allowed anywhere, checked there.
			case strings.HasPrefix(cm.Text, DirectivePrefix):
				fd := owner[cm]
				if fd == nil {
					c.ds.errorf(cm.Slash, "%s is not in the doc comment of a function: directives must directly precede a func declaration", firstWord(cm.Text))
					continue
				}
				found[fd] = append(found[fd], cm)
			case spacedRE.MatchString(cm.Text):
				m := spacedRE.FindStringSubmatch(cm.Text)
				c.ds.warnf(cm.Slash, "%q is not a directive and is ignored: write //dbos:%s without a space", strings.TrimSpace(m[0]), m[1])
			}
		}
	}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || len(found[fd]) == 0 {
			continue
		}
		cms := found[fd]
		for _, extra := range cms[1:] {
			c.ds.errorf(extra.Slash, "%s: %s already has a directive at line %d; one directive per function", firstWord(extra.Text), fd.Name.Name, c.ds.fset.Position(cms[0].Slash).Line)
		}
		if fn := c.function(fd, cms[0]); fn != nil {
			c.out.Funcs = append(c.out.Funcs, fn)
		}
	}
}

func firstWord(s string) string {
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i]
	}
	return s
}

// function builds the model of one annotated function, or returns nil after
// reporting why it cannot be one.
func (c *collector) function(fd *ast.FuncDecl, cm *ast.Comment) *Func {
	at := func(off int) token.Pos { return cm.Slash + token.Pos(off) }
	d, err := ParseDirective(cm.Text)
	if err != nil {
		se := err.(*SyntaxError)
		c.ds.errorf(at(se.Offset), "%s", se.Msg)
		return nil
	}
	kind, ok := kindOf(d.Kind)
	if !ok {
		c.ds.errorf(at(d.KindOffset), "unknown directive //dbos:%s (want //dbos:workflow, //dbos:step or //dbos:transaction)", d.Kind)
		return nil
	}
	fn := &Func{Kind: kind, Name: fd.Name.Name, Directive: d, decl: fd, dirPos: cm.Slash}
	c.out.intended = append(c.out.intended, wrapperNames(kind, fn.Name)...)
	var probs []problem
	switch kind {
	case KindStep:
		fn.Step, probs = parseStepOptions(d)
	case KindTransaction:
		fn.Tx, probs = parseTransactionOptions(d)
	case KindWorkflow:
		fn.Workflow, probs = parseWorkflowOptions(d)
	}
	bad := false
	for _, p := range probs {
		if p.warning {
			c.ds.warnf(at(p.off), "%s", p.msg)
		} else {
			c.ds.errorf(at(p.off), "%s", p.msg)
			bad = true
		}
	}
	if !c.signature(fn) {
		bad = true
	}
	if kind == KindStep && fn.Step.ShouldRetry != "" && !c.shouldRetry(fn.Step.ShouldRetry, at(fn.Step.shouldRetryOff)) {
		bad = true
	}
	if bad {
		return nil
	}
	fn.DurableName = fn.defaultName(c.out.Path)
	if n := fn.explicitName(); n != "" {
		fn.DurableName = n
	}
	return fn
}

func (fn *Func) explicitName() string {
	switch fn.Kind {
	case KindStep:
		return fn.Step.Name
	case KindTransaction:
		return fn.Tx.Name
	}
	return fn.Workflow.Name
}

// defaultName is DBOS's default: the qualified name of the function.
func (fn *Func) defaultName(pkgPath string) string {
	if fn.Recv != nil {
		return pkgPath + "." + fn.Recv.TypeName + "." + fn.Name
	}
	return pkgPath + "." + fn.Name
}

// shouldRetry checks that name is a package-level func(error) bool.
func (c *collector) shouldRetry(name string, pos token.Pos) bool {
	if c.pkg.Types == nil {
		return false
	}
	obj := c.pkg.Types.Scope().Lookup(name)
	if obj == nil {
		c.ds.errorf(pos, "should_retry: %s is not declared in package %s", name, c.out.Name)
		return false
	}
	switch obj.(type) {
	case *types.Func, *types.Var:
	default:
		c.ds.errorf(pos, "should_retry: %s is a %s, not a func(error) bool", name, objectKind(obj))
		return false
	}
	sig, ok := obj.Type().Underlying().(*types.Signature)
	if !ok || sig.TypeParams().Len() > 0 || sig.Params().Len() != 1 || sig.Results().Len() != 1 ||
		!isError(sig.Params().At(0).Type()) || !types.Identical(sig.Results().At(0).Type(), types.Typ[types.Bool]) {
		c.ds.errorf(pos, "should_retry: %s has type %s, want func(error) bool", name, types.TypeString(obj.Type(), types.RelativeTo(c.pkg.Types)))
		return false
	}
	return true
}

func objectKind(obj types.Object) string {
	switch obj.(type) {
	case *types.TypeName:
		return "type"
	case *types.Const:
		return "constant"
	case *types.PkgName:
		return "package name"
	}
	return fmt.Sprintf("%T", obj)
}

// warnIgnored warns about directives in files the build does not include:
// _test.go files (dbosgen generates from the package proper, so their
// wrappers would be missing) and files excluded by build constraints (a
// dbos_gen.go is generated for the build dbosgen runs in).
func warnIgnored(ds *diags, p *packages.Package, dir string) {
	tests, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
	for _, path := range append(append([]string(nil), p.IgnoredFiles...), tests...) {
		why := "the file is excluded by build constraints and dbosgen generates for the current build: pass its tags with -tags"
		if strings.HasSuffix(path, "_test.go") {
			why = "dbosgen generates from a package's non-test files: move the function out of the _test.go file"
		}
		f, err := parser.ParseFile(ds.fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			continue // not ours to report: the go command will
		}
		for _, g := range f.Comments {
			for _, cm := range g.List {
				if strings.HasPrefix(cm.Text, DirectivePrefix) && !vet.IsAllow(cm.Text) {
					ds.warnf(cm.Slash, "%s is ignored: %s", firstWord(cm.Text), why)
				}
			}
		}
	}
}
