package engine

import "github.com/jackc/pgx/v5"

// SetTracer installs a pgx tracer on the system database pool, so tests can
// count the statements each operation sends.
func SetTracer(cfg *Config, t pgx.QueryTracer) { cfg.tracer = t }

// ResetSystemPool closes the system pool's idle connections, so that the
// next statement opens a new one.
func ResetSystemPool(rt *Runtime) { rt.sysPool.Reset() }

// ExpireLease makes rt act as if its lease ran out unrenewed (a pause
// longer than the lease), without pausing the process.
func ExpireLease(rt *Runtime) { rt.lease.validUntil.Store(0) }
