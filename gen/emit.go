package gen

import (
	"bytes"
	"fmt"
	"go/token"
	"go/types"
	"strconv"
	"strings"
	"time"

	"github.com/dave/jennifer/jen"
	"golang.org/x/tools/imports"
)

// emit renders the dbos_gen.go of one package. Output depends only on the
// model, which is in source order, so the same input gives the same bytes.
func emit(pkg *Package, nm *naming) ([]byte, error) {
	f := jen.NewFilePathName(pkg.Path, pkg.Name)
	f.HeaderComment(Header)
	// Name every import explicitly: jennifer would otherwise guess aliases
	// from paths (v5 for pgx) and could pick one a user identifier takes.
	for path, name := range nm.imports {
		if path == dbosPath && name == "dbos" || path == implPath && name == "dbosimpl" || path == sqlxPath && name == "sqlx" || name == lastElemName(path) {
			f.ImportName(path, name)
		} else {
			f.ImportAlias(path, name)
		}
	}
	e := &emitter{f: f, nm: nm}
	var workflows []*Func
	for _, fn := range pkg.Funcs {
		nm.locals(fn)
		switch fn.Kind {
		case KindStep:
			e.step(fn)
		case KindTransaction:
			e.transaction(fn)
		case KindWorkflow:
			e.workflow(fn)
			workflows = append(workflows, fn)
		}
	}
	e.doc(helperPrefix + "AppVersion is the hash of this package's annotated functions, part of the default application version: recovery resumes only workflows started by the same code.")
	f.Const().Id(helperPrefix + "AppVersion").Op("=").Lit(pkg.Version)
	f.Line()
	e.register(pkg.Path, workflows)

	var buf bytes.Buffer
	if err := f.Render(&buf); err != nil {
		return nil, fmt.Errorf("rendering %s for %s: %w", OutputName, pkg.Path, err)
	}
	// jennifer gofmts but puts all imports in one block; group the standard
	// library first, as goimports would, so the file reads like hand-written
	// Go. FormatOnly: never add or drop an import.
	out, err := imports.Process(OutputName, buf.Bytes(), &imports.Options{FormatOnly: true, Comments: true, TabIndent: true, TabWidth: 8})
	if err != nil {
		return nil, fmt.Errorf("formatting %s for %s: %w", OutputName, pkg.Path, err)
	}
	return out, nil
}

// lastElemName is the package name go would assume for path, for the import
// paths where that is right (so the import needs no alias).
func lastElemName(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			return path[i+1:]
		}
	}
	return path
}

type emitter struct {
	f  *jen.File
	nm *naming
}

// doc writes a comment wrapped at 76 columns.
func (e *emitter) doc(text string) {
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > 76 {
			e.f.Comment(line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		e.f.Comment(line)
	}
}

// multi renders a composite literal's elements one per line.
var multi = jen.Options{Open: "{", Close: "}", Separator: ",", Multi: true}

func field(name string, v jen.Code) jen.Code { return jen.Id(name).Op(":").Add(v) }

// resultType is R of (R, error), or struct{} for error-only functions: the
// runtime is generic over one result, and struct{} encodes as {}.
func resultType(fn *Func) jen.Code {
	if fn.Result == nil {
		return jen.Struct()
	}
	return typeCode(fn.Result)
}

// wrapperParams: ctx, then the user's parameters under their local names.
func wrapperParams(fn *Func) []jen.Code {
	ps := []jen.Code{jen.Id(fn.ctxName).Qual(contextPath, "Context")}
	for i, p := range fn.Params {
		if fn.Variadic && i == len(fn.Params)-1 {
			ps = append(ps, jen.Id(p.Local).Op("...").Add(typeCode(sliceElem(p.Type))))
		} else {
			ps = append(ps, jen.Id(p.Local).Add(typeCode(p.Type)))
		}
	}
	return ps
}

// callArgs passes the wrapper's parameters on, spreading a variadic one.
func callArgs(fn *Func, lead ...jen.Code) []jen.Code {
	args := lead
	for i, p := range fn.Params {
		a := jen.Id(p.Local)
		if fn.Variadic && i == len(fn.Params)-1 {
			a.Op("...")
		}
		args = append(args, a)
	}
	return args
}

// funcHead starts a wrapper declaration: a method on the same receiver as
// the annotated method, or a plain function.
func funcHead(fn *Func, name string) *jen.Statement {
	s := jen.Func()
	if fn.Recv != nil {
		t := jen.Id(fn.Recv.TypeName)
		if fn.Recv.Pointer {
			t = jen.Op("*").Id(fn.Recv.TypeName)
		}
		s.Params(jen.Id(fn.Recv.Local).Add(t))
	}
	return s.Id(name)
}

// callUser calls the annotated function (through the receiver for methods).
func callUser(fn *Func, args []jen.Code) *jen.Statement {
	if fn.Recv != nil {
		return jen.Id(fn.Recv.Local).Dot(fn.Name).Call(args...)
	}
	return jen.Id(fn.Name).Call(args...)
}

// closureReturn is the body of the closure handed to the runtime: call the
// user's function, adapting an error-only result to (struct{}, error).
func closureReturn(fn *Func, args []jen.Code) jen.Code {
	if fn.Result == nil {
		return jen.Return(jen.Struct().Values(), callUser(fn, args))
	}
	return jen.Return(callUser(fn, args))
}

// returnRun returns what a runtime call returns: (R, error) as is, or only
// the error when the user's function returns only an error.
func returnRun(fn *Func, call jen.Code) []jen.Code {
	if fn.Result == nil {
		return []jen.Code{
			jen.List(jen.Id("_"), jen.Id(fn.errName)).Op(":=").Add(call),
			jen.Return(jen.Id(fn.errName)),
		}
	}
	return []jen.Code{jen.Return(call)}
}

func results(fn *Func) jen.Code {
	if fn.Result == nil {
		return jen.Error()
	}
	return jen.Params(typeCode(fn.Result), jen.Error())
}

// configComment documents the helper holding fn's configuration, quoting
// the directive it comes from.
func (e *emitter) configComment(fn *Func, what string) {
	e.f.Comment(fmt.Sprintf("%s %s %s, from:", fn.OptionsVar, what, fn.Name))
	e.f.Comment("")
	e.f.Comment("\t" + fn.Directive.String())
}

func (e *emitter) step(fn *Func) {
	o := fn.Step
	e.configComment(fn, "is the retry policy of step")
	opts := []jen.Code{
		field("Name", jen.Lit(fn.DurableName)),
		field("RetriesAllowed", jen.Lit(o.RetriesAllowed)),
		field("MaxAttempts", jen.Lit(o.MaxAttempts)),
		field("Interval", durationCode(o.Interval)),
		field("BackoffRate", jen.Op(strconv.FormatFloat(o.BackoffRate, 'g', -1, 64))),
		field("MaxInterval", durationCode(o.MaxInterval)),
	}
	if o.ShouldRetry != "" {
		opts = append(opts, field("ShouldRetry", jen.Id(o.ShouldRetry)))
	}
	e.f.Var().Id(fn.OptionsVar).Op("=").Qual(implPath, "StepOptions").Custom(multi, opts...)

	closure := jen.Func().Params(jen.Id(fn.ctxName).Qual(contextPath, "Context")).Params(resultType(fn), jen.Error()).
		Block(closureReturn(fn, callArgs(fn, jen.Id(fn.ctxName))))
	runArgs := func() []jen.Code {
		return []jen.Code{jen.Id(fn.ctxName), jen.Op("&").Id(fn.OptionsVar), closure}
	}

	e.f.Line()
	e.doc(fmt.Sprintf("%s runs %s as a durable step. Inside a workflow its outcome is recorded under the next step ID and, when the workflow runs again, returned without calling it; outside a workflow it only applies the retry policy.", fn.Wrapper, fn.Name))
	e.f.Add(funcHead(fn, fn.Wrapper)).Params(wrapperParams(fn)...).Add(results(fn)).
		Block(returnRun(fn, jen.Qual(implPath, "RunStep").Call(runArgs()...))...)

	e.f.Line()
	e.doc(fmt.Sprintf("%s runs %s as a durable step in a new goroutine. The step ID is taken at the call, so replay matches steps to calls whatever order they finish in.", fn.Second, fn.Name))
	e.f.Add(funcHead(fn, fn.Second)).Params(wrapperParams(fn)...).Op("*").Qual(dbosPath, "Future").Types(resultType(fn)).
		Block(jen.Return(jen.Qual(implPath, "RunStepAsync").Call(runArgs()...)))
	e.f.Line()
}

var isolationConst = map[string]string{
	"serializable":    "Serializable",
	"repeatable_read": "RepeatableRead",
	"read_committed":  "ReadCommitted",
}

func (e *emitter) transaction(fn *Func) {
	o := fn.Tx
	e.configComment(fn, "configures transaction")
	opts := []jen.Code{
		field("Name", jen.Lit(fn.DurableName)),
		field("Isolation", jen.Qual(implPath, isolationConst[o.Isolation])),
	}
	if o.ReadOnly {
		opts = append(opts, field("ReadOnly", jen.True()))
	}
	e.f.Var().Id(fn.OptionsVar).Op("=").Qual(implPath, "TransactionOptions").Custom(multi, opts...)

	closure := jen.Func().Params(jen.Id(fn.ctxName).Qual(contextPath, "Context"), jen.Id(fn.txName).Op("*").Qual(sqlxPath, "Tx")).
		Params(resultType(fn), jen.Error()).
		Block(closureReturn(fn, callArgs(fn, jen.Id(fn.ctxName), jen.Id(fn.txName))))
	e.f.Line()
	e.doc(fmt.Sprintf("%s runs %s in a database transaction that also records its outcome, so its effects happen exactly once; a replay returns the recorded outcome.", fn.Wrapper, fn.Name))
	e.f.Add(funcHead(fn, fn.Wrapper)).Params(wrapperParams(fn)...).Add(results(fn)).
		Block(returnRun(fn, jen.Qual(implPath, "RunTransaction").Call(jen.Id(fn.ctxName), jen.Op("&").Id(fn.OptionsVar), closure))...)
	e.f.Line()
}

func (e *emitter) workflow(fn *Func) {
	e.doc(fmt.Sprintf("%s holds the inputs of workflow %s, stored to recover the call. Its options come from:", fn.ArgsType, fn.Name))
	e.f.Comment("")
	e.f.Comment("\t" + fn.Directive.String())
	fields := make([]jen.Code, len(fn.Params))
	for i, p := range fn.Params {
		fields[i] = jen.Id(p.Field).Add(typeCode(p.Type)).Tag(map[string]string{"json": p.JSONKey})
	}
	e.f.Type().Id(fn.ArgsType).Struct(fields...)
	e.f.Line()
	e.f.Comment(fmt.Sprintf("%s is workflow %s, registered by init.", fn.OptionsVar, fn.Name))
	e.f.Var().Id(fn.OptionsVar).Op("*").Qual(implPath, "Workflow").Types(jen.Id(fn.ArgsType), resultType(fn))

	args := jen.Id(fn.ArgsType).Custom(jen.Options{Open: "{", Close: "}", Separator: ","}, func() []jen.Code {
		kv := make([]jen.Code, len(fn.Params))
		for i, p := range fn.Params {
			kv[i] = field(p.Field, jen.Id(p.Local))
		}
		return kv
	}()...)
	e.f.Line()
	e.doc(fmt.Sprintf("%s runs %s as a durable workflow and waits for its result. Set the workflow ID with dbos.WithWorkflowID; with the ID of a finished workflow it returns the recorded result without running it again.", fn.Wrapper, fn.Name))
	e.f.Add(funcHead(fn, fn.Wrapper)).Params(wrapperParams(fn)...).Add(results(fn)).
		Block(returnRun(fn, jen.Id(fn.OptionsVar).Dot("Run").Call(jen.Id(fn.ctxName), args))...)
	e.f.Line()
	e.doc(fmt.Sprintf("%s starts %s as a durable workflow and returns a handle to its ID and result.", fn.Second, fn.Name))
	e.f.Add(funcHead(fn, fn.Second)).Params(wrapperParams(fn)...).
		Params(jen.Op("*").Qual(dbosPath, "WorkflowHandle").Types(resultType(fn)), jen.Error()).
		Block(jen.Return(jen.Id(fn.OptionsVar).Dot("Start").Call(jen.Id(fn.ctxName), jen.Add(args))))
	e.f.Line()
	e.doc(fmt.Sprintf("%s puts %s on a queue and returns a handle to its ID and result; an executor serving the queue runs it within the queue's limits. Per-call options: %s.With(dbos.EnqueueOptions{...}).", fn.Enqueue, fn.Name, fn.queueName))
	eps := append([]jen.Code{wrapperParams(fn)[0], jen.Id(fn.queueName).Op("*").Qual(dbosPath, "Queue")}, wrapperParams(fn)[1:]...)
	e.f.Add(funcHead(fn, fn.Enqueue)).Params(eps...).
		Params(jen.Op("*").Qual(dbosPath, "WorkflowHandle").Types(resultType(fn)), jen.Error()).
		Block(jen.Return(jen.Id(fn.OptionsVar).Dot("Enqueue").Call(jen.Id(fn.ctxName), jen.Id(fn.queueName), jen.Add(args))))
	e.f.Line()
}

// register registers the workflows in an init function rather than in
// variable initializers: a workflow that calls or starts itself (or another
// that calls it back) would otherwise be an initialization cycle.
func (e *emitter) register(pkgPath string, fns []*Func) {
	taken := func(n string) bool { return e.nm.global[n] || isUniverse(n) || token.IsKeyword(n) }
	fresh := func(base string) string {
		n := base
		for i := 2; taken(n); i++ {
			n = base + strconv.Itoa(i)
		}
		return n
	}
	ctx, args := fresh("ctx"), fresh("args")
	body := make([]jen.Code, 0, len(fns)+1)
	for _, fn := range fns {
		o := fn.Workflow
		opts := []jen.Code{
			field("Name", jen.Lit(fn.DurableName)),
			field("MaxRecoveryAttempts", jen.Lit(o.MaxRecoveryAttempts)),
		}
		if o.Timeout > 0 {
			opts = append(opts, field("Timeout", durationCode(o.Timeout)))
		}
		if o.Schedule != "" {
			// The runtime builds a tick's inputs with this (checkSchedule
			// made sure of the two time.Time parameters).
			sch, act := fresh("scheduled"), fresh("actual")
			opts = append(opts, field("Schedule", jen.Lit(o.Schedule)),
				field("ScheduleArgs", jen.Func().Params(jen.List(jen.Id(sch), jen.Id(act)).Qual(timePath, "Time")).Any().
					Block(jen.Return(jen.Id(fn.ArgsType).Values(jen.Dict{
						jen.Id(fn.Params[0].Field): jen.Id(sch),
						jen.Id(fn.Params[1].Field): jen.Id(act),
					})))))
		}
		callArgs := []jen.Code{jen.Id(ctx)}
		for i, p := range fn.Params {
			a := jen.Id(args).Dot(p.Field)
			if fn.Variadic && i == len(fn.Params)-1 {
				a.Op("...")
			}
			callArgs = append(callArgs, a)
		}
		closure := jen.Func().Params(jen.Id(ctx).Qual(contextPath, "Context"), jen.Id(args).Id(fn.ArgsType)).
			Params(resultType(fn), jen.Error()).
			Block(closureReturn(fn, callArgs))
		body = append(body, jen.Id(fn.OptionsVar).Op("=").Qual(implPath, "RegisterWorkflow").Call(
			jen.Qual(implPath, "WorkflowOptions").Custom(multi, opts...), closure))
	}
	body = append(body, jen.Qual(implPath, "RegisterVersion").Call(jen.Lit(pkgPath), jen.Id(helperPrefix+"AppVersion")))
	if len(fns) > 0 {
		e.doc("init registers every workflow by name, so that recovery can decode its stored inputs and resume it, and this package's version hash.")
	} else {
		e.doc("init registers this package's version hash.")
	}
	e.f.Func().Id("init").Params().Block(body...)
	e.f.Line()
}

// durationCode spells d with the largest time unit dividing it:
// time.Second, 1500 * time.Millisecond, 90 * time.Minute.
func durationCode(d time.Duration) jen.Code {
	if d == 0 {
		return jen.Lit(0)
	}
	units := []struct {
		d    time.Duration
		name string
	}{{time.Hour, "Hour"}, {time.Minute, "Minute"}, {time.Second, "Second"}, {time.Millisecond, "Millisecond"}, {time.Microsecond, "Microsecond"}, {time.Nanosecond, "Nanosecond"}}
	for _, u := range units {
		if d%u.d == 0 {
			n := d / u.d
			if n == 1 {
				return jen.Qual(timePath, u.name)
			}
			return jen.Lit(int(n)).Op("*").Qual(timePath, u.name)
		}
	}
	return jen.Lit(int(d))
}

// sliceElem is T of a variadic parameter's []T.
func sliceElem(t types.Type) types.Type { return t.(*types.Slice).Elem() }
