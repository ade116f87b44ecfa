package templates

import (
	"strings"
	"testing"
)

func TestInit(t *testing.T) {
	files, err := Init(InitData{Module: "example.com/hello", AppName: "hello", GoVersion: "1.24", Replace: "/src/dbosgen"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var paths []string
	for _, f := range files {
		got[f.Path] = string(f.Content)
		paths = append(paths, f.Path)
	}
	want := []string{".github/workflows/dbosgen.yml", ".gitignore", "Makefile", "README.md", "go.mod", "main.go", "workflows.go", "workflows_test.go"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Fatalf("files %v, want %v", paths, want)
	}
	for path, content := range got {
		if strings.Contains(content, "[[") || strings.Contains(content, "<no value>") {
			t.Errorf("%s has an unrendered template action:\n%s", path, content)
		}
	}
	for _, w := range []string{"module example.com/hello", "go 1.24", "replace github.com/dbosgen/dbosgen => /src/dbosgen"} {
		if !strings.Contains(got["go.mod"], w) {
			t.Errorf("go.mod lacks %q:\n%s", w, got["go.mod"])
		}
	}
	if !strings.Contains(got["main.go"], `dbos.Config{AppName: "hello", Setup: createTables}`) {
		t.Errorf("main.go does not set AppName:\n%s", got["main.go"])
	}
	if !strings.Contains(got["workflows_test.go"], "dbostest.CrashAfter(") || !strings.Contains(got["workflows_test.go"], "dbostest.Replay(") {
		t.Errorf("workflows_test.go does not use the test kit:\n%s", got["workflows_test.go"])
	}
	if !strings.Contains(got["Makefile"], "\tgo run github.com/dbosgen/dbosgen/cmd/dbosgen -check ./...") {
		t.Errorf("Makefile lacks a tab-indented check recipe:\n%s", got["Makefile"])
	}

	files, err = Init(InitData{Module: "m", AppName: "m", GoVersion: "1.24"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Path == "go.mod" && strings.Contains(string(f.Content), "replace") {
			t.Errorf("go.mod without Replace has a replace directive:\n%s", f.Content)
		}
	}
	if _, err := Init(InitData{}); err == nil {
		t.Error("Init with no module: no error")
	}
}
