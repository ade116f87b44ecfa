package gen

import (
	"go/ast"
	"go/token"
	"go/types"
)

// Package is the model of one package: what emit needs, nothing more.
type Package struct {
	Path  string // import path
	Name  string // package name
	Dir   string
	Types *types.Package
	Funcs []*Func // in source order (file name, then position)
	// Version is the hash of the annotated functions, registered with the
	// runtime as this package's part of the application version.
	Version string

	scope map[string]bool // package-level names the generated file must avoid
	// intended are the wrapper names of every directive, valid or not: user
	// code calling them is expected to fail to type-check until generation.
	intended []string
}

// Func is one annotated function or method.
type Func struct {
	Kind        Kind
	Name        string // Go name of the annotated function
	Recv        *Recv  // nil for plain functions
	Params      []*Param
	Variadic    bool       // last Param is variadic (its Type is the slice)
	Result      types.Type // nil when the function returns only error
	DurableName string     // name= or the default pkgpath.[Recv.]func

	Step      StepOptions
	Tx        TransactionOptions
	Workflow  WorkflowOptions
	Directive Directive

	// Generated identifiers (names.go).
	Wrapper    string // xStep, xTx, xWorkflow
	Second     string // xStepAsync, startXWorkflow; "" for transactions
	Enqueue    string // enqueueXWorkflow; workflows only
	OptionsVar string // package-level options (steps, transactions) or workflow handle
	ArgsType   string // workflows: the struct holding the stored inputs

	decl      *ast.FuncDecl
	dirPos    token.Pos // of the directive comment
	ctxName   string    // local names inside the wrappers (names.go)
	txName    string
	errName   string
	queueName string // the queue parameter of enqueueXWorkflow
}

// Recv is a method's receiver.
type Recv struct {
	Name     string // as declared; "" or "_" when unnamed
	Local    string // name used by the generated wrapper
	TypeName string
	Pointer  bool
}

// Param is a parameter after ctx (and after tx for transactions).
type Param struct {
	Name string     // as declared; "" or "_" when unnamed
	Type types.Type // for a variadic parameter, the slice type
	Pos  token.Pos

	Local   string // name in the generated wrapper (names.go)
	Field   string // workflows: field of the args struct
	JSONKey string
}

// IsMethod reports whether fn has a receiver.
func (fn *Func) IsMethod() bool { return fn.Recv != nil }

// key is fn's identity inside the package, used to name its helpers:
// "fetchPrice" or "Store_reserveStock".
func (fn *Func) key() string {
	if fn.Recv != nil {
		return fn.Recv.TypeName + "_" + fn.Name
	}
	return fn.Name
}
