package gen

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"go/format"
	"go/token"
	"sort"
)

// versionSalt names the encoding of generated code. Bump it when a change to
// the generator alters what is stored (the args structs' JSON, say), so that
// workflows started by older generated code are not resumed by newer.
const versionSalt = "dbosgen/v1"

// versionHash hashes the annotated functions of a package: each one's
// canonical directive and its declaration printed by go/printer without its
// comments and without positions (an empty FileSet), so that the printer
// lays it out from the syntax alone: where the source breaks lines or leaves
// blank ones does not count. Editing a comment, reformatting or changing
// unannotated code leaves the version unchanged, so in-flight workflows are
// not stranded by unrelated edits; changing a workflow, step or transaction
// changes it. Entries are sorted so file order does not matter.
func versionHash(fns []*Func) string {
	layout := token.NewFileSet() // knows no position: no line is preserved
	entries := make([]string, 0, len(fns))
	for _, fn := range fns {
		decl := *fn.decl
		decl.Doc = nil
		var buf bytes.Buffer
		buf.WriteString(fn.Directive.String())
		buf.WriteByte('\n')
		if err := format.Node(&buf, layout, &decl); err != nil {
			// Cannot happen for a declaration that type-checked; fall back
			// on the name so the hash stays deterministic.
			buf.WriteString(fn.Name)
		}
		entries = append(entries, buf.String())
	}
	sort.Strings(entries)
	h := sha256.New()
	h.Write([]byte(versionSalt))
	for _, e := range entries {
		h.Write([]byte{0})
		h.Write([]byte(e))
	}
	return hex.EncodeToString(h.Sum(nil))
}
