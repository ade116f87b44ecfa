package cli

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// source is where a new module gets dbosgen from: a published version (go
// get) or a local clone (a replace directive). Exactly one is set, or
// neither when this binary is a development build whose clone cannot be
// found.
type source struct {
	version string // a module version to require: "v1.2.3", or "latest"
	clone   string // the root of a clone of dbosgen, absolute
}

// selfSource reports where the running dbosgen comes from. Tests replace it.
var selfSource = func() source {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return source{version: "latest"}
	}
	return sourceFromBuild(info, findClone)
}

// sourceFromBuild decides from the build information: a dbosgen built as a
// module version (go install ...@v1.2.3, go run ...@latest, or a dependency
// of the module running it) requires that version; a development build (go
// run ./cmd/dbosgen in a clone, or a dependency replaced by a local
// directory) uses the clone its source came from.
func sourceFromBuild(info *debug.BuildInfo, findClone func(devel bool) string) source {
	mod := &info.Main
	if mod.Path != dbosgenModule {
		mod = nil
		for _, d := range info.Deps {
			if d.Path == dbosgenModule {
				mod = d
				break
			}
		}
	}
	switch {
	case mod == nil:
		// Built into something else in a way that records no dbosgen
		// module: the best guess is a clone around the source, else the
		// latest release.
		if c := findClone(false); c != "" {
			return source{clone: c}
		}
		return source{version: "latest"}
	case mod.Replace != nil && mod.Replace.Version == "":
		// A dependency replaced by a local directory: that directory is a
		// clone, and the source file this runs from sits in it.
		return source{clone: findClone(false)}
	case mod.Replace != nil:
		return source{version: mod.Version}
	case mod.Version != "" && mod.Version != "(devel)":
		return source{version: mod.Version}
	}
	return source{clone: findClone(mod == &info.Main)}
}

// findClone locates the clone this binary was built from: the module root
// above this source file (recorded unless built with -trimpath), or, for a
// build of dbosgen itself (devel), above the working directory, where go run
// ./cmd/dbosgen runs. It returns "" when neither is a dbosgen clone.
func findClone(devel bool) string {
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); devel && err == nil {
		starts = append(starts, wd)
	}
	for _, dir := range starts {
		for {
			if isClone(dir) {
				return dir
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return ""
}

// isClone reports whether dir is the root of the dbosgen module with its
// runtime: what a replace directive can point at.
func isClone(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil || modulePath(data) != dbosgenModule {
		return false
	}
	st, err := os.Stat(filepath.Join(dir, "runtime", "dbos"))
	return err == nil && st.IsDir()
}

// modulePath is the path on a go.mod file's module line.
func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		rest, ok := strings.CutPrefix(line, "module")
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '\t' && rest[0] != '"') {
			continue
		}
		rest = strings.TrimSpace(rest)
		if p, err := strconv.Unquote(rest); err == nil {
			return p
		}
		return rest
	}
	return ""
}
