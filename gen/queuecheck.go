package gen

import (
	"go/ast"
	"go/constant"
	"go/token"
	"go/types"
)

// queues reports dbos.NewQueue calls whose options cannot work, as
// positioned errors: they would panic when the package initializes (see
// engine.checkQueue, whose rules these mirror for values known at compile
// time; other values are left to the runtime).
func (c *collector) queues(f *ast.File) {
	if c.info == nil {
		return
	}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) != 2 || !c.isNewQueue(call.Fun) {
			return true
		}
		if s, ok := c.constString(call.Args[0]); ok && s == "" {
			c.ds.errorf(call.Args[0].Pos(), "dbos.NewQueue: a queue needs a name")
		}
		lit, ok := call.Args[1].(*ast.CompositeLit)
		if !ok {
			return true
		}
		ints := map[string]int64{}
		pos := map[string]token.Pos{}
		partitioned := false
		var rate *ast.CompositeLit
		for _, e := range lit.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			key, _ := kv.Key.(*ast.Ident)
			if key == nil {
				continue
			}
			pos[key.Name] = kv.Pos()
			switch key.Name {
			case "RateLimit":
				rate, _ = kv.Value.(*ast.CompositeLit)
			case "Partitioned":
				if v, ok := c.constValue(kv.Value); ok && v.Kind() == constant.Bool {
					partitioned = constant.BoolVal(v)
				}
			default:
				if v, ok := c.constInt(kv.Value); ok {
					ints[key.Name] = v
				}
			}
		}
		for _, k := range []string{"WorkerConcurrency", "GlobalConcurrency", "PartitionConcurrency"} {
			if ints[k] < 0 {
				c.ds.errorf(pos[k], "dbos.NewQueue: %s cannot be negative", k)
			}
		}
		if w, g := ints["WorkerConcurrency"], ints["GlobalConcurrency"]; w > 0 && g > 0 && w > g {
			c.ds.errorf(pos["WorkerConcurrency"], "dbos.NewQueue: WorkerConcurrency %d exceeds GlobalConcurrency %d", w, g)
		}
		if ints["PartitionConcurrency"] > 0 && !partitioned {
			c.ds.errorf(pos["PartitionConcurrency"], "dbos.NewQueue: PartitionConcurrency needs Partitioned: true")
		}
		if rate != nil {
			c.rateLimit(rate)
		}
		return true
	})
}

// rateLimit checks a dbos.RateLimit literal: a limit needs a positive
// period, a period a positive limit.
func (c *collector) rateLimit(lit *ast.CompositeLit) {
	limit, period := int64(0), int64(0)
	limitKnown, periodKnown := true, true
	for _, e := range lit.Elts {
		kv, ok := e.(*ast.KeyValueExpr)
		if !ok {
			return // positional fields: leave it to the runtime
		}
		key, _ := kv.Key.(*ast.Ident)
		if key == nil {
			return
		}
		v, ok := c.constInt(kv.Value)
		switch key.Name {
		case "Limit":
			limit, limitKnown = v, ok
		case "Period":
			period, periodKnown = v, ok
		}
	}
	switch {
	case limitKnown && limit < 0:
		c.ds.errorf(lit.Pos(), "dbos.NewQueue: a rate limit cannot be negative")
	case limitKnown && periodKnown && limit > 0 && period <= 0:
		c.ds.errorf(lit.Pos(), "dbos.NewQueue: a rate limit of %d needs a positive Period (starts per period)", limit)
	case limitKnown && periodKnown && limit == 0 && period != 0:
		c.ds.errorf(lit.Pos(), "dbos.NewQueue: a rate limit Period needs a positive Limit")
	}
}

func (c *collector) isNewQueue(fun ast.Expr) bool {
	var id *ast.Ident
	switch f := fun.(type) {
	case *ast.SelectorExpr:
		id = f.Sel
	case *ast.Ident:
		id = f
	default:
		return false
	}
	fn, ok := c.info.Uses[id].(*types.Func)
	return ok && fn.Pkg() != nil && fn.Pkg().Path() == dbosPath && fn.Name() == "NewQueue"
}

func (c *collector) constValue(e ast.Expr) (constant.Value, bool) {
	tv, ok := c.info.Types[e]
	if !ok || tv.Value == nil {
		return nil, false
	}
	return tv.Value, true
}

func (c *collector) constInt(e ast.Expr) (int64, bool) {
	v, ok := c.constValue(e)
	if !ok || v.Kind() != constant.Int {
		return 0, false
	}
	return constant.Int64Val(v)
}

func (c *collector) constString(e ast.Expr) (string, bool) {
	v, ok := c.constValue(e)
	if !ok || v.Kind() != constant.String {
		return "", false
	}
	return constant.StringVal(v), true
}
