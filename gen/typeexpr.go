package gen

import (
	"go/types"
	"strconv"
	"strings"

	"github.com/dave/jennifer/jen"
)

// typeCode spells t in the generated file. Types are rebuilt from go/types
// rather than copied from the source, because the source spells them with
// its own file's imports (aliases, dot imports) while dbos_gen.go has its
// own; jen.Qual resolves each package to the name chosen in chooseImports.
func typeCode(t types.Type) jen.Code {
	switch u := t.(type) {
	case *types.Alias:
		return qualified(u.Obj(), u.TypeArgs())
	case *types.Named:
		return qualified(u.Obj(), u.TypeArgs())
	case *types.Basic:
		if u.Kind() == types.UnsafePointer {
			return jen.Qual("unsafe", "Pointer")
		}
		return jen.Id(u.Name())
	case *types.Pointer:
		return jen.Op("*").Add(typeCode(u.Elem()))
	case *types.Slice:
		return jen.Index().Add(typeCode(u.Elem()))
	case *types.Array:
		return jen.Index(jen.Op(strconv.FormatInt(u.Len(), 10))).Add(typeCode(u.Elem()))
	case *types.Map:
		return jen.Map(typeCode(u.Key())).Add(typeCode(u.Elem()))
	case *types.Chan:
		elem := typeCode(u.Elem())
		if c, ok := u.Elem().(*types.Chan); ok && c.Dir() == types.RecvOnly {
			elem = jen.Parens(elem) // chan (<-chan T), not chan<- chan T
		}
		switch u.Dir() {
		case types.SendOnly:
			return jen.Chan().Op("<-").Add(elem)
		case types.RecvOnly:
			return jen.Op("<-").Chan().Add(elem)
		}
		return jen.Chan().Add(elem)
	case *types.Signature:
		return jen.Func().Add(signatureCode(u))
	case *types.Struct:
		fields := make([]jen.Code, u.NumFields())
		for i := range fields {
			f := u.Field(i)
			var s *jen.Statement
			if f.Embedded() {
				s = jen.Add(typeCode(f.Type()))
			} else {
				s = jen.Id(f.Name()).Add(typeCode(f.Type()))
			}
			if tag := u.Tag(i); tag != "" {
				s.Op(rawString(tag))
			}
			fields[i] = s
		}
		return jen.Struct(fields...)
	case *types.Interface:
		var items []jen.Code
		for i := 0; i < u.NumEmbeddeds(); i++ {
			items = append(items, typeCode(u.EmbeddedType(i)))
		}
		for i := 0; i < u.NumExplicitMethods(); i++ {
			m := u.ExplicitMethod(i)
			items = append(items, jen.Id(m.Name()).Add(signatureCode(m.Type().(*types.Signature))))
		}
		return jen.Interface(items...)
	case *types.Union:
		terms := make([]jen.Code, u.Len())
		for i := range terms {
			t := u.Term(i)
			c := jen.Add(typeCode(t.Type()))
			if t.Tilde() {
				c = jen.Op("~").Add(c)
			}
			terms[i] = c
		}
		return jen.Custom(jen.Options{Separator: " |"}, terms...)
	case *types.TypeParam:
		return jen.Id(u.Obj().Name())
	}
	return jen.Id(t.String())
}

// qualified spells a named type, with its type arguments.
func qualified(obj *types.TypeName, targs *types.TypeList) jen.Code {
	var s *jen.Statement
	if obj.Pkg() == nil {
		s = jen.Id(obj.Name()) // error, any, comparable
	} else {
		s = jen.Qual(obj.Pkg().Path(), obj.Name())
	}
	if targs.Len() > 0 {
		args := make([]jen.Code, targs.Len())
		for i := range args {
			args[i] = typeCode(targs.At(i))
		}
		s.Types(args...)
	}
	return s
}

// signatureCode spells a func type's parameters and results, unnamed.
func signatureCode(sig *types.Signature) *jen.Statement {
	params := make([]jen.Code, sig.Params().Len())
	for i := range params {
		t := sig.Params().At(i).Type()
		if sig.Variadic() && i == len(params)-1 {
			params[i] = jen.Op("...").Add(typeCode(t.(*types.Slice).Elem()))
		} else {
			params[i] = typeCode(t)
		}
	}
	s := jen.Params(params...)
	switch sig.Results().Len() {
	case 0:
	case 1:
		s.Add(typeCode(sig.Results().At(0).Type()))
	default:
		results := make([]jen.Code, sig.Results().Len())
		for i := range results {
			results[i] = typeCode(sig.Results().At(i).Type())
		}
		s.Params(results...)
	}
	return s
}

// rawString quotes a struct tag the way people write them: in backquotes,
// unless it contains one.
func rawString(s string) string {
	if strings.Contains(s, "`") {
		return strconv.Quote(s)
	}
	return "`" + s + "`"
}
