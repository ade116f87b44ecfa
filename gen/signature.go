package gen

import (
	"go/ast"
	"go/token"
	"go/types"
	"strconv"
)

const sqlxPath = "github.com/jmoiron/sqlx"

// signature checks fn's declaration against the accepted shapes and fills in
// its receiver, parameters and result. It reports every problem it finds and
// returns false if there was any.
//
//	step         func [recv] x(ctx context.Context, p...) (R, error) | error
//	transaction  func [recv] x(ctx context.Context, tx *sqlx.Tx, p...) (R, error) | error
//	workflow     func x(ctx context.Context, p...) (R, error) | error
func (c *collector) signature(fn *Func) bool {
	fd := fn.decl
	obj, _ := c.info.Defs[fd.Name].(*types.Func)
	if obj == nil {
		// The package did not type-check far enough; its errors are reported.
		return false
	}
	sig := obj.Type().(*types.Signature)
	ok := true
	kind := fn.Kind.String()

	generic := fd.Type.TypeParams != nil
	if generic {
		c.ds.errorf(fd.Type.TypeParams.Opening, "%s %s is generic: a %s needs concrete types, since its inputs and outputs are stored and decoded without knowing the type arguments", kind, fd.Name.Name, kind)
		ok = false
	}
	if fd.Recv != nil {
		if fn.Kind == KindWorkflow {
			c.ds.errorf(fd.Recv.Opening, "workflow %s is a method: workflows must be plain functions, because recovery rebuilds the call from the stored inputs alone and has no receiver to call it on (pass what it needs as parameters, or make it a step)", fd.Name.Name)
			return false
		}
		recv, rok := c.receiver(fd, sig)
		if !rok {
			ok = false
		}
		fn.Recv = recv
	}

	// Parameters: ctx first, then tx for transactions, then the user's.
	params := paramPositions(fd.Type.Params)
	skip := 1
	if sig.Params().Len() < 1 || !isContext(sig.Params().At(0).Type()) {
		pos := fd.Type.Params.Opening
		if len(params) > 0 {
			pos = params[0]
		}
		c.ds.errorf(pos, "%s %s: first parameter must be ctx context.Context", kind, fd.Name.Name)
		ok = false
	}
	if fn.Kind == KindTransaction {
		skip = 2
		if sig.Params().Len() < 2 || !isSqlxTx(sig.Params().At(1).Type()) {
			pos := fd.Type.Params.Closing
			if len(params) > 1 {
				pos = params[1]
			}
			c.ds.errorf(pos, "transaction %s: second parameter must be tx *sqlx.Tx (%s), the transaction the function runs in", fd.Name.Name, sqlxPath)
			ok = false
		}
	}
	fn.Variadic = sig.Variadic()
	for i := skip; i < sig.Params().Len(); i++ {
		v := sig.Params().At(i)
		p := &Param{Name: v.Name(), Type: v.Type(), Pos: params[i]}
		fn.Params = append(fn.Params, p)
		// Only workflow inputs are stored (to replay the call on recovery);
		// step and transaction arguments are captured by a closure and never
		// leave the process, so they may be anything: a client, a func.
		if fn.Kind == KindWorkflow && !generic {
			if why := unserializable(v.Type(), c.pkg.Types); why != "" {
				c.ds.errorf(p.Pos, "workflow %s: parameter %s: %s (workflow inputs are stored to recover the call)", fd.Name.Name, paramLabel(v.Name(), i), why)
				ok = false
			}
		}
	}

	// Results: error, or (R, error) with R storable.
	res := sig.Results()
	resPos := fd.Type.Params.Closing
	if fd.Type.Results != nil {
		resPos = fd.Type.Results.Pos()
	}
	switch {
	case res.Len() == 0 || !isError(res.At(res.Len()-1).Type()):
		c.ds.errorf(resPos, "%s %s must return error or (R, error)", kind, fd.Name.Name)
		ok = false
	case res.Len() > 2:
		c.ds.errorf(resPos, "%s %s returns %d values; return (R, error) with a struct R to carry several", kind, fd.Name.Name, res.Len())
		ok = false
	case res.Len() == 2:
		fn.Result = res.At(0).Type()
		if generic {
			break // already refused; the type parameter would only repeat it
		}
		if why := unserializable(fn.Result, c.pkg.Types); why != "" {
			c.ds.errorf(resultPos(fd.Type.Results), "%s %s: result: %s (outputs are recorded and replayed on recovery)", kind, fd.Name.Name, why)
			ok = false
		}
	}
	return ok
}

// receiver reads a method's receiver; generic receivers are refused like
// generic functions.
func (c *collector) receiver(fd *ast.FuncDecl, sig *types.Signature) (*Recv, bool) {
	r := &Recv{}
	field := fd.Recv.List[0]
	if len(field.Names) > 0 {
		r.Name = field.Names[0].Name
	}
	t := sig.Recv().Type()
	if p, ok := t.(*types.Pointer); ok {
		r.Pointer, t = true, p.Elem()
	}
	named, ok := types.Unalias(t).(*types.Named)
	if !ok {
		c.ds.errorf(field.Pos(), "%s: cannot read the receiver type", fd.Name.Name)
		return r, false
	}
	r.TypeName = named.Obj().Name()
	if named.TypeParams().Len() > 0 {
		c.ds.errorf(field.Pos(), "method %s has a generic receiver %s: directives need concrete types", fd.Name.Name, r.TypeName)
		return r, false
	}
	return r, true
}

// paramPositions lists the position of each parameter, expanding "a, b int"
// and using the type's position for unnamed parameters.
func paramPositions(fl *ast.FieldList) []token.Pos {
	var out []token.Pos
	for _, f := range fl.List {
		if len(f.Names) == 0 {
			out = append(out, f.Type.Pos())
		}
		for _, n := range f.Names {
			out = append(out, n.Pos())
		}
	}
	return out
}

func resultPos(fl *ast.FieldList) token.Pos {
	if len(fl.List) > 0 {
		f := fl.List[0]
		if len(f.Names) > 0 {
			return f.Names[0].Pos()
		}
		return f.Type.Pos()
	}
	return fl.Pos()
}

func paramLabel(name string, i int) string {
	if name == "" || name == "_" {
		return "#" + strconv.Itoa(i+1)
	}
	return name
}

func isNamed(t types.Type, path, name string) bool {
	n, ok := types.Unalias(t).(*types.Named)
	return ok && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == path && n.Obj().Name() == name
}

func isContext(t types.Type) bool { return isNamed(t, "context", "Context") }

func isSqlxTx(t types.Type) bool {
	p, ok := types.Unalias(t).(*types.Pointer)
	return ok && isNamed(p.Elem(), sqlxPath, "Tx")
}

var errorType = types.Universe.Lookup("error").Type()

func isError(t types.Type) bool { return types.Identical(t, errorType) }
