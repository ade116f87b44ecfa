package gen

import (
	"fmt"
	"strconv"
	"strings"
)

// DirectivePrefix starts every directive comment. Like //go:generate it has no
// space after the slashes: that is what makes it a directive rather than prose
// (gofmt and go/ast treat such lines as directives and keep them out of docs).
const DirectivePrefix = "//dbos:"

// Directive is one parsed //dbos: comment line. Offsets are byte offsets into
// the comment text, so callers can position errors at the offending key.
type Directive struct {
	Kind       string // text after "//dbos:" up to the first space: "step", ...
	KindOffset int
	Args       []Arg
}

// Arg is one key or key=value pair of a directive.
type Arg struct {
	Key         string
	Value       string
	HasValue    bool // false for a bare key, which means "true" for booleans
	Offset      int  // of the key
	ValueOffset int  // of the value (its opening quote when quoted)
}

// SyntaxError is a directive that cannot be split into kind and arguments.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string { return e.Msg }

// ParseDirective parses a comment that starts with DirectivePrefix:
//
//	//dbos:kind key=value key="quoted value" bare_key
//
// Values are a run of non-space characters or a Go double-quoted string.
// Keys and values are not interpreted here (see options.go), so this
// function is total and cheap to fuzz.
func ParseDirective(text string) (Directive, error) {
	if !strings.HasPrefix(text, DirectivePrefix) {
		return Directive{}, &SyntaxError{0, "not a " + DirectivePrefix + " directive"}
	}
	d := Directive{KindOffset: len(DirectivePrefix)}
	i := len(DirectivePrefix)
	for i < len(text) && !isSpace(text[i]) {
		i++
	}
	d.Kind = text[d.KindOffset:i]
	if d.Kind == "" {
		return d, &SyntaxError{d.KindOffset, "missing directive kind after " + DirectivePrefix}
	}
	if !isIdent(d.Kind) {
		return d, &SyntaxError{d.KindOffset, fmt.Sprintf("invalid directive kind %q", d.Kind)}
	}
	for {
		for i < len(text) && isSpace(text[i]) {
			i++
		}
		if i == len(text) {
			return d, nil
		}
		a := Arg{Offset: i}
		j := i
		for j < len(text) && !isSpace(text[j]) && text[j] != '=' {
			j++
		}
		a.Key = text[i:j]
		if !isIdent(a.Key) {
			return d, &SyntaxError{i, fmt.Sprintf("invalid key %q (want key or key=value)", text[i:untilSpace(text, i)])}
		}
		i = j
		if i < len(text) && text[i] == '=' {
			i++
			a.HasValue, a.ValueOffset = true, i
			switch {
			case i == len(text) || isSpace(text[i]):
				return d, &SyntaxError{a.Offset, fmt.Sprintf("missing value after %s=", a.Key)}
			case text[i] == '"':
				q, err := strconv.QuotedPrefix(text[i:])
				if err != nil || q[0] != '"' {
					return d, &SyntaxError{i, fmt.Sprintf("unterminated or invalid quoted value for %s", a.Key)}
				}
				a.Value, _ = strconv.Unquote(q)
				i += len(q)
				if i < len(text) && !isSpace(text[i]) {
					return d, &SyntaxError{i, fmt.Sprintf("unexpected %q after quoted value of %s", text[i:untilSpace(text, i)], a.Key)}
				}
			default:
				j := untilSpace(text, i)
				a.Value = text[i:j]
				i = j
			}
		}
		d.Args = append(d.Args, a)
	}
}

// String renders d canonically; ParseDirective(d.String()) yields the same
// kind, keys and values (offsets aside). The version hash uses this form so
// that spacing inside a directive does not change the application version.
func (d Directive) String() string {
	var b strings.Builder
	b.WriteString(DirectivePrefix)
	b.WriteString(d.Kind)
	for _, a := range d.Args {
		b.WriteByte(' ')
		b.WriteString(a.Key)
		if a.HasValue {
			b.WriteByte('=')
			if needsQuote(a.Value) {
				b.WriteString(strconv.Quote(a.Value))
			} else {
				b.WriteString(a.Value)
			}
		}
	}
	return b.String()
}

func needsQuote(v string) bool {
	if v == "" || v[0] == '"' {
		return true
	}
	for i := 0; i < len(v); i++ {
		if isSpace(v[i]) {
			return true
		}
	}
	return false
}

func untilSpace(s string, i int) int {
	for i < len(s) && !isSpace(s[i]) {
		i++
	}
	return i
}

// isSpace is the separator set of a directive line. Comments cannot hold
// newlines, but fuzzed input can, so they separate too.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}
