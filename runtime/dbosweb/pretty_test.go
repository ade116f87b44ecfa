package dbosweb

import "testing"

func TestPretty(t *testing.T) {
	for in, want := range map[string]string{
		`{"b":"\u003cx\u003e \u0026","a":1}`: "{\n  \"b\": \"<x> &\",\n  \"a\": 1\n}",
		`"\\u003c"`:                          `"\\u003c"`, // an escaped backslash, then text
		`"a\"b"`:                             `"a\"b"`,
		`not json <b>`:                       `not json <b>`,
		`12345678901234567890`:               `12345678901234567890`,
	} {
		if got := pretty(in); got != want {
			t.Errorf("pretty(%s) = %s, want %s", in, got, want)
		}
	}
}
