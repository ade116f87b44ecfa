// Package show holds what the examples print that is not about dbosgen
// itself: where the state lives, and the runtime's log lines in between the
// example's own.
package show

import (
	"io"
	"log/slog"
	"net/url"
	"os"

	"github.com/dbosgen/dbosgen/runtime/dbos"
)

// Database says where the runtime of app will keep its state, without
// printing a password.
func Database(app string) string {
	u := os.Getenv(dbos.EnvSystemDatabaseURL)
	if u == "" {
		return "the embedded SQLite file .dbos/" + app + ".sqlite (set " + dbos.EnvSystemDatabaseURL + " for PostgreSQL)"
	}
	if p, err := url.Parse(u); err == nil && p.Host != "" {
		return p.Scheme + "://" + p.Host + p.Path + " (from $" + dbos.EnvSystemDatabaseURL + ")"
	}
	return "$" + dbos.EnvSystemDatabaseURL
}

// Logger prints the runtime's log lines on stdout, between the example's own
// lines, marked "[dbos]" and without timestamps.
func Logger() *slog.Logger {
	h := slog.NewTextHandler(prefixWriter{os.Stdout, "    [dbos] "}, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
				return slog.Attr{}
			}
			return a
		},
	})
	return slog.New(h)
}

type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
