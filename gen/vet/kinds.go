package vet

import (
	"go/types"
	"strings"
)

// Kind names a class of finding. Each kind's detection rules for calls and
// its wording are in this file; statements (go, select, range) and
// package-level variables are recognised in walk.go and globals.go, worded
// here.
type Kind string

const (
	KindClock       Kind = "clock"
	KindRandom      Kind = "random"
	KindEnvironment Kind = "environment"
	KindFile        Kind = "file"
	KindNetwork     Kind = "network"
	KindDatabase    Kind = "database"
	KindGoroutine   Kind = "goroutine"
	KindSelect      Kind = "select"
	KindMapOrder    Kind = "map-order"
	KindPackageVar  Kind = "package-var"
	KindSync        Kind = "sync"
	KindRuntime     Kind = "runtime"
	KindDirectCall  Kind = "direct-call"
	KindAllow       Kind = "allow" // a malformed //dbos:allow
)

// reason is what a call does and what to do instead; the message of a
// finding is "<callee> <does>: <instead>".
type reason struct {
	kind    Kind
	does    string
	instead string
}

var (
	clockRead = reason{KindClock, "reads the clock, and a recovered workflow reads another time",
		"read it in a step, which records it"}
	clockWait = reason{KindClock, "waits on the clock, and a recovered workflow waits again from the start",
		"wait in a step"}
	randomDraw = reason{KindRandom, "draws a random value, and a recovered workflow draws another",
		"draw it in a step, which records it, or use a generator seeded from the workflow's inputs"}
	envRead = reason{KindEnvironment, "reads the process's environment, which can differ in the process that recovers the workflow",
		"pass the value as a workflow input, or read it in a step"}
	processInfo = reason{KindEnvironment, "depends on the process, which differs when the workflow is recovered",
		"do it in a step, which records the outcome"}
	fileIO = reason{KindFile, "uses the file system outside a step: its outcome is not recorded and it runs again on recovery",
		"do it in a step"}
	networkIO = reason{KindNetwork, "uses the network outside a step: its outcome is not recorded and it runs again on recovery",
		"do it in a step"}
	databaseIO = reason{KindDatabase, "uses a database outside a transaction: its outcome is not recorded and it runs again on recovery",
		"do it in a //dbos:transaction function (or a step)"}
	syncUse = reason{KindSync, "coordinates with other goroutines, whose timing recovery cannot replay",
		"keep shared state out of the workflow, or do this in a step"}
	runtimeUse = reason{KindRuntime, "depends on the Go runtime's state in this process",
		"do it in a step, or leave it out of the workflow"}
)

// sleepAdvice replaces clockWait's advice when the runtime has dbos.Sleep.
const sleepAdvice = "use dbos.Sleep, which is durable, or wait in a step"

// Statement and variable findings.
const (
	goStmtMsg = "go statement in a workflow: goroutines interleave differently when the workflow is recovered: " +
		"start async steps (xStepAsync) and wait on their Futures"
	selectMsg = "select in a workflow: which case is ready depends on timing, so a recovered workflow can choose another: " +
		"start async steps (xStepAsync) and wait on their Futures in a fixed order"
	mapOrderMsg = "range over a map calls steps: map order is random, so a recovered workflow calls them in another order and replays the wrong outcomes: " +
		"range over sorted keys, e.g. slices.Sorted(maps.Keys(m))"
	varWriteMsg = "assigns package-level variable %s: the state outlives the workflow and differs in the process that recovers it: " +
		"return the value instead, or keep the state in a step or the database"
	varReadMsg = "reads package-level variable %s, which is assigned after initialization (%s): a recovered workflow can read another value: " +
		"pass it as a workflow input, or read it in a step"
	directCallMsg = "calls %s %s directly: it runs unrecorded, and again on every recovery: call %s"
	allowMsg      = "//dbos:allow needs a reason: //dbos:allow <why this is deterministic>"
)

// dbosgenModule is this repository's module; its runtime packages are safe
// to call from workflows.
const (
	dbosgenModule = "github.com/dbosgen/dbosgen"
	runtimePrefix = dbosgenModule + "/runtime/"
	dbosPath      = runtimePrefix + "dbos"
)

// isRuntime reports whether path is one of the runtime's packages.
func isRuntime(path string) bool { return strings.HasPrefix(path, runtimePrefix) }

// durableRuntime lists the runtime functions that take a step ID inside a
// workflow (so their order matters): the generated wrappers' callees and the
// recorded operations of package dbos.
var durableRuntime = map[string]bool{
	"RunStep": true, "RunStepAsync": true, "RunTransaction": true,
	"Sleep": true, "Send": true, "Recv": true, "SetEvent": true, "GetEvent": true,
	"WriteStream": true, "CloseStream": true, "ReadStream": true,
}

// isDurableRuntime reports whether fn, a runtime function, is recorded.
func isDurableRuntime(fn *types.Func) bool {
	if fn.Signature().Recv() != nil {
		return false
	}
	return durableRuntime[fn.Name()]
}

// rule classifies the functions and methods of one package: name is the
// function's name, recv the name of the receiver's type ("" for functions).
type rule func(name, recv string) (reason, bool)

// rules maps package paths to what calling into them does.
var rules = map[string]rule{
	"time": func(name, recv string) (reason, bool) {
		switch {
		case (recv == "Timer" || recv == "Ticker") && name == "Reset":
			return clockWait, true
		case recv != "":
			return reason{}, false
		}
		switch name {
		case "Now", "Since", "Until":
			return clockRead, true
		case "Sleep", "After", "Tick", "NewTimer", "NewTicker", "AfterFunc":
			return clockWait, true
		}
		return reason{}, false
	},
	"math/rand":              globalRandom,
	"math/rand/v2":           globalRandom,
	"crypto/rand":            always(randomDraw),
	"github.com/google/uuid": names(randomDraw, "New", "NewString", "NewRandom", "NewUUID", "NewV6", "NewV7"),

	"os": osRule,
	"os/exec": func(name, recv string) (reason, bool) {
		switch {
		case recv == "Cmd" && (name == "Run" || name == "Start" || name == "Output" || name == "CombinedOutput" || name == "Wait"):
			return reason{KindEnvironment, "runs another program outside a step: its outcome is not recorded and it runs again on recovery", "do it in a step"}, true
		case recv == "" && name == "LookPath":
			return envRead, true
		}
		return reason{}, false // Command builds a value
	},
	"os/signal":     always(processInfo),
	"os/user":       always(envRead),
	"syscall":       always(processInfo),
	"io/ioutil":     names(fileIO, "ReadFile", "WriteFile", "ReadDir", "TempFile", "TempDir"),
	"path/filepath": names(fileIO, "Abs", "EvalSymlinks", "Glob", "Walk", "WalkDir"),

	"net":      netRule,
	"net/http": httpRule,
	"net/smtp": func(name, recv string) (reason, bool) {
		return networkIO, recv == "Client" || name == "SendMail" || name == "Dial"
	},
	"net/rpc": func(name, recv string) (reason, bool) {
		return networkIO, recv == "Client" || strings.HasPrefix(name, "Dial")
	},

	"database/sql": func(name, recv string) (reason, bool) {
		switch recv {
		case "DB", "Conn", "Tx", "Stmt", "Rows": // not Row: its query has run
			return databaseIO, true
		case "":
			return databaseIO, name == "Open" || name == "OpenDB"
		}
		return reason{}, false
	},
	"github.com/jmoiron/sqlx": func(name, recv string) (reason, bool) {
		switch name {
		case "Rebind", "BindNamed", "BindType", "BindDriver", "In", "Named", "NewDb", "DriverName", "Unsafe", "MapperFunc", "Mapper":
			return reason{}, false // pure: no database access
		}
		switch recv {
		case "", "DB", "Tx", "Conn", "Stmt", "NamedStmt", "Rows":
			return databaseIO, true
		}
		return reason{}, false
	},
	"github.com/jackc/pgx/v5":         pgxRule,
	"github.com/jackc/pgx/v5/pgxpool": pgxRule,

	"sync":            always(syncUse),
	"sync/atomic":     always(syncUse),
	"runtime":         always(runtimeUse),
	"runtime/debug":   always(runtimeUse),
	"runtime/pprof":   always(runtimeUse),
	"runtime/trace":   always(runtimeUse),
	"runtime/metrics": always(runtimeUse),
}

// varRules lists package-level variables of other packages whose reads are
// nondeterministic (reads of the module's own variables are judged by where
// they are assigned, in globals.go).
var varRules = map[string]reason{
	"os.Args":            envRead,
	"crypto/rand.Reader": randomDraw,
}

func always(r reason) rule { return func(string, string) (reason, bool) { return r, true } }

// names matches the package-level functions listed.
func names(r reason, list ...string) rule {
	return func(name, recv string) (reason, bool) {
		if recv != "" {
			return reason{}, false
		}
		for _, n := range list {
			if n == name {
				return r, true
			}
		}
		return reason{}, false
	}
}

// globalRandom matches math/rand's functions that use the shared source;
// constructors of seeded generators, and their methods, are deterministic.
func globalRandom(name, recv string) (reason, bool) {
	if recv != "" {
		return reason{}, false
	}
	switch name {
	case "New", "NewSource", "NewPCG", "NewChaCha8", "NewZipf":
		return reason{}, false
	}
	return randomDraw, true
}

func osRule(name, recv string) (reason, bool) {
	switch recv {
	case "":
	case "File", "Process", "Root":
		return fileIO, true
	default:
		return reason{}, false // FileMode, LinkError...: values
	}
	switch name {
	case "Getenv", "LookupEnv", "Environ", "ExpandEnv", "Setenv", "Unsetenv", "Clearenv",
		"UserHomeDir", "UserCacheDir", "UserConfigDir", "TempDir":
		return envRead, true
	case "Getpid", "Getppid", "Getuid", "Geteuid", "Getgid", "Getegid", "Getgroups", "Getpagesize",
		"Hostname", "Executable", "Getwd", "Exit", "FindProcess", "StartProcess":
		return processInfo, true
	case "IsExist", "IsNotExist", "IsPermission", "IsTimeout", "NewSyscallError", "IsPathSeparator",
		"Expand", "SameFile":
		return reason{}, false // pure
	}
	return fileIO, true
}

func netRule(name, recv string) (reason, bool) {
	if recv == "" {
		for _, p := range []string{"Dial", "Listen", "Lookup", "Resolve", "Interface", "File", "Pipe"} {
			if strings.HasPrefix(name, p) {
				return networkIO, true
			}
		}
		return reason{}, false
	}
	switch recv {
	case "Conn", "PacketConn", "Listener", "TCPConn", "UDPConn", "UnixConn", "IPConn", "TCPListener",
		"UnixListener", "Dialer", "ListenConfig", "Resolver", "Interface", "Buffers":
		return networkIO, true
	}
	return reason{}, false
}

func httpRule(name, recv string) (reason, bool) {
	switch recv {
	case "Client", "Transport", "Server", "RoundTripper":
		return networkIO, true
	case "":
		switch name {
		case "Get", "Head", "Post", "PostForm", "ListenAndServe", "ListenAndServeTLS", "Serve", "ServeTLS":
			return networkIO, true
		}
	}
	return reason{}, false
}

func pgxRule(name, recv string) (reason, bool) {
	switch recv {
	case "Conn", "Pool", "Tx", "Rows", "Row", "BatchResults", "LargeObjects", "LargeObject":
		return databaseIO, true
	case "":
		for _, p := range []string{"Connect", "Collect", "ForEach", "Begin", "New"} {
			if strings.HasPrefix(name, p) {
				return databaseIO, true
			}
		}
	}
	return reason{}, false
}

// classify says what calling fn, a function outside the module, does.
func classify(fn *types.Func) (reason, bool) {
	if fn.Pkg() == nil {
		return reason{}, false
	}
	r, ok := rules[fn.Pkg().Path()]
	if !ok {
		return reason{}, false
	}
	return r(fn.Name(), recvName(fn))
}

// recvName is the name of the type of fn's receiver, "" for a function.
func recvName(fn *types.Func) string {
	recv := fn.Signature().Recv()
	if recv == nil {
		return ""
	}
	t := recv.Type()
	if p, ok := t.(*types.Pointer); ok {
		t = p.Elem()
	}
	switch t := types.Unalias(t).(type) {
	case *types.Named:
		return t.Obj().Name()
	case *types.Interface:
		// A method of an embedded or unnamed interface: name it by the
		// interface that declares it when the object knows it.
		return ""
	}
	return ""
}

// calleeName renders fn for messages: "time.Now", "(*http.Client).Do".
func calleeName(fn *types.Func) string {
	pkg := ""
	if fn.Pkg() != nil {
		pkg = fn.Pkg().Name() + "."
	}
	recv := fn.Signature().Recv()
	if recv == nil {
		return pkg + fn.Name()
	}
	t := recv.Type()
	star := ""
	if p, ok := t.(*types.Pointer); ok {
		t, star = p.Elem(), "*"
	}
	if n, ok := types.Unalias(t).(*types.Named); ok {
		return "(" + star + pkg + n.Obj().Name() + ")." + fn.Name()
	}
	return pkg + fn.Name()
}
