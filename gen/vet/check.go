package vet

import (
	"errors"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"reflect"
	"sort"
	"strings"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/packages"
)

// Config says how to load packages, as for the go command.
type Config struct {
	Dir        string   // "" is the current directory
	Env        []string // nil is os.Environ()
	BuildFlags []string // e.g. -tags=integration
}

// loadMode is what the analyzer needs of a package it checks.
const loadMode = packages.NeedName | packages.NeedFiles | packages.NeedCompiledGoFiles |
	packages.NeedSyntax | packages.NeedTypes | packages.NeedTypesInfo |
	packages.NeedModule

// LoadError is returned by Run when packages do not load or type-check:
// their errors, as the go command prints them.
type LoadError struct {
	Errors []string
}

func (e *LoadError) Error() string {
	return strings.Join(e.Errors, "\n")
}

// Run loads the packages matching patterns (none: the package in
// cfg.Dir) and checks their workflows. Packages that do not type-check are a
// *LoadError: run go generate first if the errors name wrappers.
func Run(cfg Config, patterns ...string) ([]Finding, error) {
	if len(patterns) == 0 {
		patterns = []string{"."}
	}
	pkgs, err := packages.Load(cfg.packagesConfig(loadMode), patterns...)
	if err != nil {
		return nil, err
	}
	if len(pkgs) == 0 {
		return nil, errors.New("no packages matched")
	}
	var le LoadError
	packages.Visit(pkgs, nil, func(p *packages.Package) {
		for _, e := range p.Errors {
			le.Errors = append(le.Errors, e.Error())
		}
	})
	if len(le.Errors) > 0 {
		sort.Strings(le.Errors)
		le.Errors = compactStrings(le.Errors)
		return nil, &le
	}
	return Check(cfg, pkgs)
}

func (cfg Config) packagesConfig(mode packages.LoadMode) *packages.Config {
	return &packages.Config{
		Mode:       mode,
		Dir:        cfg.Dir,
		Env:        cfg.Env,
		BuildFlags: cfg.BuildFlags,
		ParseFile: func(fset *token.FileSet, filename string, src []byte) (*ast.File, error) {
			return parser.ParseFile(fset, filename, src, parser.ParseComments|parser.SkipObjectResolution)
		},
	}
}

// Check checks the workflows of roots, packages loaded with syntax and
// types (at least NeedSyntax|NeedTypes|NeedTypesInfo, and NeedModule to
// follow calls into other packages of the module), and returns the findings
// sorted by position, one per position and message. The module's packages
// that roots import are loaded from source as needed (the runtime's are
// not), so that calls into them are followed.
func Check(cfg Config, roots []*packages.Package) ([]Finding, error) {
	byPath := map[string]*packages.Package{}
	var start []string
	for _, p := range roots {
		byPath[p.PkgPath] = p
		if p.Types != nil && !isRuntime(p.PkgPath) && hasWorkflow(p.Syntax) {
			start = append(start, p.PkgPath)
		}
	}
	if len(start) == 0 {
		return nil, nil
	}
	sort.Strings(start)

	// The module's packages reachable from the workflows' packages, loaded
	// a layer at a time: the imports of a package type-checked from source
	// are exact.
	modules := map[string]bool{}
	for _, path := range start {
		if m := byPath[path].Module; m != nil {
			modules[m.Path] = true
		}
	}
	inModule := func(path string) bool {
		for m := range modules {
			if path == m || strings.HasPrefix(path, m+"/") {
				return !isRuntime(path)
			}
		}
		return false
	}
	imports := func(path string) []string {
		p := byPath[path]
		if p == nil || p.Types == nil || p.Module == nil || !modules[p.Module.Path] {
			return nil
		}
		var out []string
		for _, imp := range p.Types.Imports() {
			if inModule(imp.Path()) {
				out = append(out, imp.Path())
			}
		}
		sort.Strings(out)
		return out
	}
	for layer := start; len(layer) > 0; {
		var missing []string
		seen := map[string]bool{}
		for _, path := range layer {
			for _, imp := range imports(path) {
				if byPath[imp] == nil && !seen[imp] {
					seen[imp] = true
					missing = append(missing, imp)
				}
			}
		}
		if len(missing) == 0 {
			break
		}
		lc := cfg.packagesConfig(loadMode)
		lc.Fset = roots[0].Fset
		deps, err := packages.Load(lc, missing...)
		if err != nil {
			return nil, err
		}
		layer = nil
		for _, p := range deps {
			if byPath[p.PkgPath] == nil {
				byPath[p.PkgPath] = p
				layer = append(layer, p.PkgPath)
			}
		}
		for _, path := range missing {
			if byPath[path] == nil {
				byPath[path] = &packages.Package{PkgPath: path} // not loadable: not followed
			}
		}
	}

	// Dependencies first, so that their facts are there for their
	// importers.
	var order []string
	done := map[string]bool{}
	var visit func(path string)
	visit = func(path string) {
		if done[path] {
			return
		}
		done[path] = true
		for _, imp := range imports(path) {
			visit(imp)
		}
		order = append(order, path)
	}
	for _, path := range start {
		visit(path)
	}

	requested := map[string]bool{}
	for _, p := range roots {
		requested[p.PkgPath] = true
	}
	facts := factStore{}
	var findings []Finding
	for _, path := range order {
		p := byPath[path]
		if p.Types == nil || p.TypesInfo == nil {
			continue
		}
		if p.Module == nil && !requested[path] || p.Module != nil && !modules[p.Module.Path] {
			continue
		}
		res, err := analyze(p, facts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if requested[path] {
			findings = append(findings, res.Findings...)
		}
	}
	return dedupe(findings), nil
}

// analyze runs the analyzer on one package.
func analyze(p *packages.Package, facts factStore) (*Result, error) {
	var module *analysis.Module
	if p.Module != nil {
		module = &analysis.Module{Path: p.Module.Path, Version: p.Module.Version, GoVersion: p.Module.GoVersion}
	}
	pass := &analysis.Pass{
		Analyzer:          Analyzer,
		Fset:              p.Fset,
		Files:             p.Syntax,
		OtherFiles:        p.OtherFiles,
		IgnoredFiles:      p.IgnoredFiles,
		Pkg:               p.Types,
		TypesInfo:         p.TypesInfo,
		TypesSizes:        p.TypesSizes,
		TypeErrors:        p.TypeErrors,
		Module:            module,
		Report:            func(analysis.Diagnostic) {},
		ResultOf:          map[*analysis.Analyzer]any{},
		ReadFile:          os.ReadFile,
		ImportObjectFact:  facts.importObject,
		ExportObjectFact:  func(obj types.Object, f analysis.Fact) { facts.exportObject(obj, f) },
		ImportPackageFact: func(*types.Package, analysis.Fact) bool { return false },
		ExportPackageFact: func(analysis.Fact) {},
		AllPackageFacts:   func() []analysis.PackageFact { return nil },
		AllObjectFacts:    func() []analysis.ObjectFact { return nil },
	}
	if pass.TypesSizes == nil {
		pass.TypesSizes = types.SizesFor("gc", build.Default.GOARCH)
	}
	res, err := Analyzer.Run(pass)
	if err != nil {
		return nil, err
	}
	return res.(*Result), nil
}

// factStore holds the facts of every package analyzed, keyed by the
// object's qualified name rather than its identity: the packages loaded for
// their facts come from a second load, whose objects differ from the ones
// the first load's packages refer to.
type factStore map[factKey]analysis.Fact

type factKey struct {
	obj string
	typ reflect.Type
}

func objectKey(obj types.Object) string {
	switch o := obj.(type) {
	case *types.Func:
		return o.Origin().FullName()
	case *types.Var:
		if o.Pkg() != nil {
			return o.Pkg().Path() + "." + o.Name()
		}
	}
	return ""
}

func (s factStore) importObject(obj types.Object, f analysis.Fact) bool {
	k := objectKey(obj)
	if k == "" {
		return false
	}
	got, ok := s[factKey{k, reflect.TypeOf(f)}]
	if !ok {
		return false
	}
	reflect.ValueOf(f).Elem().Set(reflect.ValueOf(got).Elem())
	return true
}

func (s factStore) exportObject(obj types.Object, f analysis.Fact) {
	if k := objectKey(obj); k != "" {
		s[factKey{k, reflect.TypeOf(f)}] = f
	}
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
