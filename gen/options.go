package gen

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Kind is what a directive makes of a function.
type Kind int

const (
	KindStep Kind = iota
	KindTransaction
	KindWorkflow
)

func (k Kind) String() string {
	switch k {
	case KindStep:
		return "step"
	case KindTransaction:
		return "transaction"
	default:
		return "workflow"
	}
}

func kindOf(s string) (Kind, bool) {
	switch s {
	case "step":
		return KindStep, true
	case "transaction":
		return KindTransaction, true
	case "workflow":
		return KindWorkflow, true
	}
	return 0, false
}

// StepOptions are a step directive's keys, defaults filled in. The generated
// dbos.StepOptions literal spells every field out, so the retry policy is
// readable in dbos_gen.go and does not depend on runtime defaults.
type StepOptions struct {
	Name           string // "" means the default pkgpath.func
	RetriesAllowed bool
	MaxAttempts    int
	Interval       time.Duration
	BackoffRate    float64
	MaxInterval    time.Duration
	ShouldRetry    string // identifier of a func(error) bool in the package
	shouldRetryOff int
}

// TransactionOptions are a transaction directive's keys.
type TransactionOptions struct {
	Name      string
	Isolation string // serializable, repeatable_read or read_committed
	ReadOnly  bool
}

// WorkflowOptions are a workflow directive's keys.
type WorkflowOptions struct {
	Name                string
	MaxRecoveryAttempts int
	Timeout             time.Duration // 0: none
	Schedule            string        // a cron spec; "": not scheduled
	scheduleOff         int           // of the schedule key, for signature errors
}

// Defaults, from DBOS Transact.
const (
	defaultMaxAttempts         = 3
	defaultInterval            = time.Second
	defaultBackoffRate         = 2.0
	defaultMaxInterval         = time.Hour
	defaultMaxRecoveryAttempts = 100
)

// problem is a complaint about a directive, at a byte offset of its text.
type problem struct {
	off     int
	msg     string
	warning bool
}

// keySpec describes one key: how to decode its value into the options.
type keySpec struct {
	decode func(a Arg) error
}

// decodeArgs applies specs to d's arguments, rejecting unknown and repeated
// keys. Every problem is collected; decoding goes on after a bad key so the
// user sees all of them at once.
func decodeArgs(d Directive, specs map[string]keySpec, refuse map[string]string) (seen map[string]Arg, probs []problem) {
	seen = map[string]Arg{}
	for _, a := range d.Args {
		if _, dup := seen[a.Key]; dup {
			probs = append(probs, problem{off: a.Offset, msg: fmt.Sprintf("key %s given twice", a.Key)})
			continue
		}
		seen[a.Key] = a
		spec, ok := specs[a.Key]
		if !ok {
			if why, ok := refuse[a.Key]; ok {
				probs = append(probs, problem{off: a.Offset, msg: why})
				continue
			}
			probs = append(probs, problem{off: a.Offset, msg: fmt.Sprintf("unknown key %s for //dbos:%s (known: %s)", a.Key, d.Kind, knownKeys(specs))})
			continue
		}
		if err := spec.decode(a); err != nil {
			off := a.ValueOffset
			if !a.HasValue {
				off = a.Offset
			}
			probs = append(probs, problem{off: off, msg: fmt.Sprintf("%s: %v", a.Key, err)})
		}
	}
	return seen, probs
}

func knownKeys(specs map[string]keySpec) string {
	keys := make([]string, 0, len(specs))
	for k := range specs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

func parseStepOptions(d Directive) (StepOptions, []problem) {
	o := StepOptions{MaxAttempts: defaultMaxAttempts, Interval: defaultInterval, BackoffRate: defaultBackoffRate, MaxInterval: defaultMaxInterval}
	specs := map[string]keySpec{
		"name":            {func(a Arg) error { return decodeName(a, &o.Name) }},
		"retries_allowed": {func(a Arg) error { return decodeBool(a, &o.RetriesAllowed) }},
		"max_attempts":    {func(a Arg) error { return decodePositiveInt(a, &o.MaxAttempts) }},
		"interval_seconds": {func(a Arg) error {
			var s float64
			if err := decodeFloat(a, &s); err != nil {
				return err
			}
			if s < 0 || s > maxSeconds {
				return fmt.Errorf("want seconds between 0 and %g, got %s", float64(maxSeconds), a.Value)
			}
			o.Interval = time.Duration(math.Round(s * float64(time.Second)))
			return nil
		}},
		"interval":     {func(a Arg) error { return decodeDuration(a, &o.Interval, false) }},
		"backoff_rate": {func(a Arg) error { return decodeBackoff(a, &o.BackoffRate) }},
		"max_interval": {func(a Arg) error {
			if err := decodeDuration(a, &o.MaxInterval, true); err != nil {
				if d, perr := time.ParseDuration(a.Value); perr == nil && d == 0 {
					return fmt.Errorf("%v (it caps each wait; for no wait between attempts set interval=0s)", err)
				}
				return err
			}
			return nil
		}},
		"should_retry": {func(a Arg) error {
			if !a.HasValue || !isIdent(a.Value) {
				return fmt.Errorf("want the name of a func(error) bool declared in this package")
			}
			o.ShouldRetry, o.shouldRetryOff = a.Value, a.ValueOffset
			return nil
		}},
	}
	refuse := map[string]string{
		"async": "unknown key async: every step gets both a synchronous xStep and an xStepAsync wrapper",
	}
	seen, probs := decodeArgs(d, specs, refuse)
	if a, ok := seen["interval"]; ok {
		if _, both := seen["interval_seconds"]; both {
			probs = append(probs, problem{off: a.Offset, msg: "interval and interval_seconds both set: use one"})
		}
	}
	// Retry knobs without retries_allowed are silently ignored by DBOS; say
	// so, since the user plainly expected them to matter.
	if _, given := seen["retries_allowed"]; !given {
		for _, k := range []string{"max_attempts", "interval", "interval_seconds", "backoff_rate", "max_interval", "should_retry"} {
			if a, ok := seen[k]; ok {
				probs = append(probs, problem{off: a.Offset, msg: k + " has no effect without retries_allowed (a step runs once unless retries are allowed)", warning: true})
			}
		}
	}
	return o, probs
}

func parseTransactionOptions(d Directive) (TransactionOptions, []problem) {
	o := TransactionOptions{Isolation: "serializable"}
	specs := map[string]keySpec{
		"name": {func(a Arg) error { return decodeName(a, &o.Name) }},
		"isolation": {func(a Arg) error {
			switch a.Value {
			case "serializable", "repeatable_read", "read_committed":
				o.Isolation = a.Value
				return nil
			}
			return fmt.Errorf("want serializable, repeatable_read or read_committed, got %q", a.Value)
		}},
		"read_only": {func(a Arg) error { return decodeBool(a, &o.ReadOnly) }},
	}
	refuse := map[string]string{
		"async": "transactions cannot be async: a transaction holds a database connection and must commit before the workflow moves on; call xTx from the workflow, and run other work meanwhile with xStepAsync",
	}
	for _, k := range []string{"retries_allowed", "max_attempts", "interval", "interval_seconds", "backoff_rate", "max_interval", "should_retry"} {
		refuse[k] = "unknown key " + k + " for //dbos:transaction: transactions retry serialization failures and deadlocks themselves; use a //dbos:step for a custom retry policy"
	}
	_, probs := decodeArgs(d, specs, refuse)
	return o, probs
}

func parseWorkflowOptions(d Directive) (WorkflowOptions, []problem) {
	o := WorkflowOptions{MaxRecoveryAttempts: defaultMaxRecoveryAttempts}
	specs := map[string]keySpec{
		"name":                  {func(a Arg) error { return decodeName(a, &o.Name) }},
		"max_recovery_attempts": {func(a Arg) error { return decodePositiveInt(a, &o.MaxRecoveryAttempts) }},
		"timeout":               {func(a Arg) error { return decodeDuration(a, &o.Timeout, true) }},
		"schedule": {func(a Arg) error {
			o.scheduleOff = a.Offset
			return decodeSchedule(a, &o.Schedule)
		}},
	}
	_, probs := decodeArgs(d, specs, nil)
	return o, probs
}

// maxSeconds bounds interval_seconds so the conversion to a Duration cannot
// overflow (about 292 years fit; a century is plenty).
const maxSeconds = 100 * 365 * 24 * 3600

func decodeName(a Arg, dst *string) error {
	if !a.HasValue || strings.TrimSpace(a.Value) == "" {
		return fmt.Errorf("want a non-empty name")
	}
	*dst = a.Value
	return nil
}

func decodeBool(a Arg, dst *bool) error {
	switch {
	case !a.HasValue || a.Value == "true":
		*dst = true
	case a.Value == "false":
		*dst = false
	default:
		return fmt.Errorf("want true or false, got %q", a.Value)
	}
	return nil
}

func decodePositiveInt(a Arg, dst *int) error {
	if !a.HasValue {
		return fmt.Errorf("missing value (want a positive integer)")
	}
	n, err := strconv.ParseInt(a.Value, 10, 32)
	if err != nil || n < 1 {
		return fmt.Errorf("want a positive integer, got %q", a.Value)
	}
	*dst = int(n)
	return nil
}

func decodeFloat(a Arg, dst *float64) error {
	if !a.HasValue {
		return fmt.Errorf("missing value (want a number)")
	}
	f, err := strconv.ParseFloat(a.Value, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("want a number, got %q", a.Value)
	}
	*dst = f
	return nil
}

func decodeBackoff(a Arg, dst *float64) error {
	var f float64
	if err := decodeFloat(a, &f); err != nil {
		return err
	}
	if f < 1 || f > 1000 {
		return fmt.Errorf("want a number between 1 and 1000 (delays must not shrink), got %s", a.Value)
	}
	*dst = f
	return nil
}

func decodeDuration(a Arg, dst *time.Duration, positive bool) error {
	if !a.HasValue {
		return fmt.Errorf("missing value (want a Go duration such as 1500ms or 2m)")
	}
	v, err := time.ParseDuration(a.Value)
	if err != nil {
		return fmt.Errorf("want a Go duration such as 1500ms or 2m, got %q", a.Value)
	}
	if v < 0 || positive && v == 0 {
		return fmt.Errorf("want a positive duration, got %s", a.Value)
	}
	*dst = v
	return nil
}
