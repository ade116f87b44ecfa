package gen

import (
	"go/token"
	"go/types"
	"reflect"
	"strings"
)

// unserializable explains why values of t would not survive a JSON round
// trip, the encoding the runtime stores inputs and outputs in, or returns ""
// if they do. It refuses what encoding/json rejects at run time (channels,
// funcs, complex numbers, unsafe pointers, unsupported map keys) and what it
// accepts but silently loses: unexported struct fields, and interfaces, whose
// concrete type is not recorded so decoding cannot rebuild them. A type with
// its own JSON or text (un)marshalers is trusted.
func unserializable(t types.Type, from *types.Package) string {
	s := &serChecker{from: from, seen: map[types.Type]bool{}}
	why := s.check(t)
	if why == "" {
		return ""
	}
	return "type " + s.str(t) + " cannot be stored as JSON: " + why
}

type serChecker struct {
	from *types.Package
	seen map[types.Type]bool // named types being checked, for recursive types
	// foreign is the outermost named type from another package that the
	// check is inside: its fields and methods are not the user's to change
	// here, so the remedy is about it, not about what is wrong inside it.
	foreign *types.Named
}

// str spells t as Go source in the package would: other packages by name.
func (s *serChecker) str(t types.Type) string {
	return types.TypeString(t, func(p *types.Package) string {
		if p == s.from {
			return ""
		}
		return p.Name()
	})
}

func (s *serChecker) check(t types.Type) string {
	if marshals(t) {
		return ""
	}
	switch u := t.(type) {
	case *types.Alias:
		return s.check(types.Unalias(u))
	case *types.Named:
		if s.seen[u] {
			return ""
		}
		s.seen[u] = true
		if pkg := u.Obj().Pkg(); s.foreign == nil && pkg != nil && pkg != s.from {
			s.foreign = u
			defer func() { s.foreign = nil }()
			if why := s.named(u); why != "" {
				return why + "; " + s.foreignRemedy(u)
			}
			return ""
		}
		return s.named(u)
	case *types.Basic:
		switch {
		case u.Kind() == types.UnsafePointer:
			return "unsafe.Pointer has no JSON encoding"
		case u.Info()&types.IsComplex != 0:
			return "complex numbers have no JSON encoding"
		}
		return ""
	case *types.Pointer:
		return s.check(u.Elem())
	case *types.Slice:
		return s.check(u.Elem())
	case *types.Array:
		return s.check(u.Elem())
	case *types.Map:
		if !validMapKey(u.Key()) {
			return "map key type " + s.str(u.Key()) + " is not a string, an integer or an encoding.TextMarshaler, so it cannot be a JSON object key"
		}
		return s.check(u.Elem())
	case *types.Struct:
		return s.structFields(u, anonStruct)
	case *types.Interface:
		return "interface values lose their concrete type in JSON and cannot be decoded; use a concrete type"
	case *types.Chan:
		return "channels have no JSON encoding"
	case *types.Signature:
		return "funcs have no JSON encoding"
	case *types.TypeParam:
		return "type parameters are not concrete"
	}
	return s.str(t) + " is not supported"
}

func (s *serChecker) named(u *types.Named) string {
	if st, ok := u.Underlying().(*types.Struct); ok {
		return s.structFields(st, s.str(u))
	}
	return s.check(u.Underlying())
}

// foreignRemedy says what to do about a type of another package that does
// not survive JSON: Go allows no methods on it here, and its fields are not
// ours to export, so the value must be stored in another form.
func (s *serChecker) foreignRemedy(u *types.Named) string {
	name, pkg := s.str(u), u.Obj().Pkg().Path()
	msg := name + " belongs to package " + pkg + ", so it cannot be given JSON methods here"
	if !isStdlib(pkg) {
		msg += " (if that package is yours, fix it there)"
	}
	own := "a named type of your own with exported fields or MarshalJSON/UnmarshalJSON methods"
	if hasMethod(u, "String") {
		return msg + ": store it as a string (its String() form) or as " + own
	}
	return msg + ": store what you need of it as " + own + ", or as a string"
}

// isStdlib reports whether an import path is the standard library's: its
// first element has no dot.
func isStdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// hasMethod reports whether t or *t has a method of that name.
func hasMethod(t types.Type, name string) bool {
	obj, _, _ := types.LookupFieldOrMethod(types.NewPointer(t), true, nil, name)
	_, ok := obj.(*types.Func)
	return ok
}

// remedy is what to do about an unexported field of the struct called
// name: nothing inside a type of another package (the caller says what to
// do instead); in the user's own type, export the field, leave it out on
// purpose, or give the type marshalers (a named type: an anonymous struct
// can have no methods).
func (s *serChecker) remedy(name string) string {
	switch {
	case s.foreign != nil:
		return ""
	case name == anonStruct:
		return "; export it, or tag it `json:\"-\"` if it need not be stored"
	}
	return "; export it, tag it `json:\"-\"` if it need not be stored, or give " + name + " MarshalJSON and UnmarshalJSON methods"
}

// anonStruct names an anonymous struct in messages.
const anonStruct = "struct"

// structFields checks what encoding/json would see of a struct: exported
// fields, and the fields promoted from embedded structs.
func (s *serChecker) structFields(st *types.Struct, name string) string {
	for i := 0; i < st.NumFields(); i++ {
		f := st.Field(i)
		tag := reflect.StructTag(st.Tag(i)).Get("json")
		if tag == "-" {
			continue // dropped on purpose by the user
		}
		if f.Embedded() {
			et := f.Type()
			if p, ok := types.Unalias(et).(*types.Pointer); ok {
				et = p.Elem()
			}
			if _, isStruct := et.Underlying().(*types.Struct); !isStruct && !f.Exported() {
				return name + "." + f.Name() + " is an unexported embedded field, which JSON drops" + s.remedy(name)
			}
			if why := s.check(f.Type()); why != "" {
				return name + "." + f.Name() + ": " + why
			}
			continue
		}
		if !f.Exported() {
			return name + "." + f.Name() + " is unexported, so JSON would silently drop it" + s.remedy(name)
		}
		if why := s.check(f.Type()); why != "" {
			return name + "." + f.Name() + ": " + why
		}
	}
	return ""
}

// validMapKey mirrors encoding/json: string and integer kinds, or a type
// implementing encoding.TextMarshaler (and TextUnmarshaler to decode).
func validMapKey(k types.Type) bool {
	if b, ok := k.Underlying().(*types.Basic); ok {
		if b.Info()&(types.IsString|types.IsInteger) != 0 {
			return true
		}
	}
	return implementsPair(k, textMarshaler, textUnmarshaler)
}

// marshals reports whether t encodes and decodes itself, as JSON or text.
func marshals(t types.Type) bool {
	return implementsPair(t, jsonMarshaler, jsonUnmarshaler) || implementsPair(t, textMarshaler, textUnmarshaler)
}

// implementsPair: t (or *t) has the marshal method and *t the unmarshal one,
// which is how encoding/json finds them on addressable values.
func implementsPair(t types.Type, m, u *types.Interface) bool {
	if _, isIface := t.Underlying().(*types.Interface); isIface {
		return false
	}
	pt := types.NewPointer(t)
	if _, isPtr := t.(*types.Pointer); isPtr {
		pt = t.(*types.Pointer)
	}
	return (types.Implements(t, m) || types.Implements(pt, m)) && types.Implements(pt, u)
}

var (
	byteSlice       = types.NewSlice(types.Typ[types.Byte])
	jsonMarshaler   = methodInterface("MarshalJSON", nil, []types.Type{byteSlice, errorType})
	jsonUnmarshaler = methodInterface("UnmarshalJSON", []types.Type{byteSlice}, []types.Type{errorType})
	textMarshaler   = methodInterface("MarshalText", nil, []types.Type{byteSlice, errorType})
	textUnmarshaler = methodInterface("UnmarshalText", []types.Type{byteSlice}, []types.Type{errorType})
)

// methodInterface builds interface{ name(params) results } without loading
// encoding/json: the check needs only the method's shape.
func methodInterface(name string, params, results []types.Type) *types.Interface {
	tuple := func(ts []types.Type) *types.Tuple {
		vars := make([]*types.Var, len(ts))
		for i, t := range ts {
			vars[i] = types.NewParam(token.NoPos, nil, "", t)
		}
		return types.NewTuple(vars...)
	}
	sig := types.NewSignatureType(nil, nil, nil, tuple(params), tuple(results), false)
	return types.NewInterfaceType([]*types.Func{types.NewFunc(token.NoPos, nil, name, sig)}, nil).Complete()
}
