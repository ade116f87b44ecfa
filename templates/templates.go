// Package templates holds the files that dbosgen init writes into a new
// module, embedded in the dbosgen binary.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"text/template"
)

//go:embed all:init
var initFS embed.FS

// InitData fills the init templates.
type InitData struct {
	// Module is the new module's path, e.g. example.com/hello.
	Module string
	// AppName names the application (dbos.Config.AppName): the default SQLite
	// file is .dbos/<AppName>.sqlite.
	AppName string
	// GoVersion is the go directive of go.mod, e.g. 1.24.
	GoVersion string
	// Replace, when set, is a local directory holding a clone of dbosgen:
	// go.mod then requires dbosgen through a replace directive.
	Replace string
}

// File is one rendered file of a scaffold.
type File struct {
	Path    string // slash-separated, relative to the new module's root
	Content []byte
}

// Init renders the scaffold of a new module, sorted by path.
func Init(d InitData) ([]File, error) {
	if d.Module == "" || d.AppName == "" || d.GoVersion == "" {
		return nil, fmt.Errorf("templates: Module, AppName and GoVersion are required")
	}
	var files []File
	err := fs.WalkDir(initFS, "init", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		src, err := initFS.ReadFile(p)
		if err != nil {
			return err
		}
		t, err := template.New(path.Base(p)).Delims("[[", "]]").Parse(string(src))
		if err != nil {
			return fmt.Errorf("templates: %s: %w", p, err)
		}
		var b bytes.Buffer
		if err := t.Execute(&b, d); err != nil {
			return fmt.Errorf("templates: %s: %w", p, err)
		}
		files = append(files, File{Path: outputPath(p), Content: b.Bytes()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// outputPath maps an embedded template name to the file it renders:
// init/github/x.yml.tmpl -> .github/x.yml, init/gitignore.tmpl -> .gitignore.
// Templates are stored without leading dots and with a .tmpl suffix so that
// neither git nor the go command treats them as live files (a go.mod here
// would cut templates/ out of the dbosgen module).
func outputPath(p string) string {
	p = strings.TrimSuffix(strings.TrimPrefix(p, "init/"), ".tmpl")
	switch {
	case p == "gitignore":
		return ".gitignore"
	case strings.HasPrefix(p, "github/"):
		return "." + p
	}
	return p
}
