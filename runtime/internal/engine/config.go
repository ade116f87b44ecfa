package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jmoiron/sqlx"
)

// Environment variables read when the matching Config field is empty.
const (
	EnvSystemDatabaseURL = "DBOS_SYSTEM_DATABASE_URL"
	EnvAppDatabaseURL    = "APP_DATABASE_URL"
	EnvAppVersion        = "DBOS__APPVERSION"
	EnvExecutorID        = "DBOS__VMID"
)

// Config configures a Runtime. Every field is optional.
type Config struct {
	// AppName names the application; it names the default SQLite file.
	AppName string
	// SystemDatabaseURL is where workflow status and step outcomes live:
	// postgres://… or postgresql://… for PostgreSQL, sqlite://path or a path
	// ending in .sqlite or .db for SQLite. Default: $DBOS_SYSTEM_DATABASE_URL,
	// else .dbos/<AppName>.sqlite. A PostgreSQL database that does not
	// exist is created at Launch, as DBOS does, from the "postgres"
	// database as the URL's user; if the user may not, Launch fails with
	// ErrConfig saying how to create it.
	SystemDatabaseURL string
	// ApplicationDatabaseURL is where transactions run. Default:
	// $APP_DATABASE_URL, else the system database. Created like the system
	// database when missing.
	ApplicationDatabaseURL string
	// ExecutorID identifies this process among those sharing a system
	// database; Launch recovers this executor's workflows. A runtime holds
	// a lease on its executor ID while it runs (see ExecutorLease): Launch
	// with an ID set here or by $DBOS__VMID whose lease a live process
	// holds fails with ErrExecutorInUse, and never runs that executor's
	// workflows; a holder proved gone (its lease expired, or it ran on this
	// machine and its process no longer exists) is replaced at once.
	// Default: $DBOS__VMID, else the host name, or, when a live process on
	// this host holds that, the first free of host-2, host-3, …: stable
	// across restarts, distinct across machines and processes.
	ExecutorID string
	// ExecutorLease is how long this runtime's hold on its executor ID
	// lasts without renewal; it is renewed every third of that, with one
	// statement. When a lease expires, a live runtime of the same
	// application name and version adopts its PENDING workflows within a
	// further third; a runtime that cannot renew in time stops its
	// workflows at their next step. Default: 15s; at least 300ms.
	ExecutorLease time.Duration
	// ApplicationVersion tags every workflow started; Launch recovers only
	// workflows of this version. Default: $DBOS__APPVERSION, else a hash of
	// every generated package's annotated code.
	ApplicationVersion string
	// Schema is the PostgreSQL schema of the system tables. Default: "dbos".
	Schema string
	// Logger receives the runtime's logs. Default: slog.Default().
	Logger *slog.Logger
	// SystemPoolSize caps the connections of the PostgreSQL system database
	// pool. When the application database is the system database,
	// transactions draw from this pool too: one cap for the whole runtime.
	// Default: 20. A pool_max_conns parameter in SystemDatabaseURL wins over
	// this field: the URL is what an operator sets per deployment.
	SystemPoolSize int
	// ApplicationPoolSize caps the connections of a separate PostgreSQL
	// application database (ApplicationDatabaseURL naming another
	// database). Default: 20. A pool_max_conns parameter in
	// ApplicationDatabaseURL wins over this field.
	ApplicationPoolSize int
	// ConnectionWaitTimeout bounds how long a statement or transaction waits
	// for a free pooled connection (PostgreSQL) before it fails with
	// ErrDatabase; the wait is logged, with what holds the connections, once
	// it lasts a third of this. It also bounds how long a server that
	// refuses connections as "too many" is retried. Default: 30s.
	//
	// On PostgreSQL a runtime holds at most SystemPoolSize + 1 connections
	// (the extra one LISTENs for cancellations), plus ApplicationPoolSize
	// with a separate application database; the minimum is 2 (pool size 1).
	// Launch checks this budget against the role's and database's
	// CONNECTION LIMIT and the server's max_connections, and refuses with
	// ErrConfig when it cannot fit.
	ConnectionWaitTimeout time.Duration
	// DisableStepBatching makes every step checkpoint and workflow
	// outcome, and on PostgreSQL every new workflow's start, a statement of
	// its own. By default, those that arrive while another of their kind is
	// in flight share the next statement: a multi-row INSERT or UPDATE, or
	// one SQLite commit. Each still returns only after its own row is
	// durable; turn batching off to debug.
	DisableStepBatching bool
	// Setup, when set, runs on the application database after the system
	// schema is ready and before Launch resumes any workflow: create or
	// migrate your own tables here, so recovered workflows find them.
	Setup func(ctx context.Context, appDB *sqlx.DB) error
	// RetentionAge, when set, makes the runtime delete this application's
	// finished workflows (SUCCESS, ERROR, CANCELLED, dead-lettered) created
	// longer ago than this, with their inputs, outcomes and steps: at
	// Launch and every RetentionInterval (default 1h), in batches of
	// RetentionBatchSize (default 1000) workflows per transaction. Default:
	// keep everything.
	RetentionAge       time.Duration
	RetentionInterval  time.Duration
	RetentionBatchSize int
	// Observer, when set, sees every workflow execution, step and
	// transaction attempt, and queue wait as it happens, and can put a
	// span in the context each body runs with (see Observer; package
	// runtime/dbosotel makes one for OpenTelemetry). Combine several with
	// Observers. The runtime's own logs come from the same events
	// whatever is set here.
	Observer Observer
	// ListenQueues names the queues (see NewQueue) this executor runs
	// workflows from. Default: every queue declared in the binary. DBOS's
	// internal queue (resume, fork) is served either way.
	ListenQueues []string

	tracer pgx.QueryTracer // statement counting in tests
}

type engine int

const (
	enginePostgres engine = iota + 1
	engineSQLite
)

func (e engine) String() string {
	if e == engineSQLite {
		return "sqlite"
	}
	return "postgres"
}

// dbTarget is a parsed database URL.
type dbTarget struct {
	engine engine
	url    string // as given, for connecting
	path   string // SQLite file
}

// String describes the target without its password, for errors and logs.
func (t dbTarget) String() string {
	if t.engine == engineSQLite {
		return "sqlite file " + t.path
	}
	return redactURL(t.url)
}

var (
	passwordParam = regexp.MustCompile(`(?i)(password=)('[^']*'|\S*)`)
	// userinfo catches a password in a URL that url.Parse rejects (a bad port, say).
	userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)\S*@`)
)

// redactURL removes passwords from a URL or a key=value connection string.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return passwordParam.ReplaceAllString(userinfo.ReplaceAllString(s, "${1}xxxxx@"), "${1}xxxxx")
}

func parseTarget(raw string) (dbTarget, error) {
	switch {
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		return dbTarget{engine: enginePostgres, url: raw}, nil
	case strings.HasPrefix(raw, "sqlite://"):
		p := strings.TrimPrefix(raw, "sqlite://")
		if p == "" {
			return dbTarget{}, fmt.Errorf("%w: %q names no file; write sqlite://path/to/file.sqlite", ErrConfig, raw)
		}
		return dbTarget{engine: engineSQLite, url: raw, path: p}, nil
	case strings.HasSuffix(raw, ".sqlite"), strings.HasSuffix(raw, ".db"):
		return dbTarget{engine: engineSQLite, url: raw, path: raw}, nil
	case strings.Contains(raw, "host=") || strings.Contains(raw, "dbname="):
		return dbTarget{engine: enginePostgres, url: raw}, nil
	}
	return dbTarget{}, fmt.Errorf("%w: cannot tell the database engine of %q: use postgres://user@host:port/db, sqlite://path, or a path ending in .sqlite or .db",
		ErrConfig, redactURL(raw))
}

// resolved is a Config with every default applied.
type resolved struct {
	Config
	system, app dbTarget
	sameDB      bool
	// defaultExecutor: no executor ID was configured; Launch picks a free
	// one from the host name (see Config.ExecutorID).
	defaultExecutor bool
}

func resolveConfig(cfg Config) (resolved, error) {
	r := resolved{Config: cfg}
	if r.AppName == "" {
		r.AppName = "dbos"
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	if r.Schema == "" {
		r.Schema = "dbos"
	}
	if r.ExecutorID == "" {
		r.ExecutorID = os.Getenv(EnvExecutorID)
	}
	if r.ExecutorID == "" {
		r.ExecutorID, r.defaultExecutor = defaultExecutorBase(), true
	}
	if r.ExecutorLease == 0 {
		r.ExecutorLease = defaultExecutorLease
	} else if r.ExecutorLease < minExecutorLease {
		return r, fmt.Errorf("%w: ExecutorLease %v is shorter than %v", ErrConfig, r.ExecutorLease, minExecutorLease)
	}
	if r.ApplicationVersion == "" {
		r.ApplicationVersion = os.Getenv(EnvAppVersion)
	}
	if r.ApplicationVersion == "" {
		r.ApplicationVersion = generatedVersion()
	}
	if r.SystemDatabaseURL == "" {
		r.SystemDatabaseURL = os.Getenv(EnvSystemDatabaseURL)
	}
	if r.SystemDatabaseURL == "" {
		r.SystemDatabaseURL = "sqlite://" + filepath.Join(".dbos", sanitizeFileName(r.AppName)+".sqlite")
	}
	if r.ApplicationDatabaseURL == "" {
		r.ApplicationDatabaseURL = os.Getenv(EnvAppDatabaseURL)
	}
	var err error
	if r.system, err = parseTarget(r.SystemDatabaseURL); err != nil {
		return r, fmt.Errorf("system database: %w", err)
	}
	if r.ApplicationDatabaseURL == "" {
		r.app, r.sameDB = r.system, true
	} else if r.app, err = parseTarget(r.ApplicationDatabaseURL); err != nil {
		return r, fmt.Errorf("application database: %w", err)
	} else {
		r.sameDB = r.ApplicationDatabaseURL == r.SystemDatabaseURL
	}
	if r.SystemPoolSize < 0 || r.ApplicationPoolSize < 0 || r.ConnectionWaitTimeout < 0 {
		return r, fmt.Errorf("%w: SystemPoolSize, ApplicationPoolSize and ConnectionWaitTimeout cannot be negative", ErrConfig)
	}
	if r.ConnectionWaitTimeout == 0 {
		r.ConnectionWaitTimeout = defaultConnectionWait
	}
	return r, nil
}

func sanitizeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
