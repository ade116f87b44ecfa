package engine

import (
	"context"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// traceAttribute is dbosgen's key in workflow_status.attributes, DBOS's
// column of user-defined workflow attributes: under it, the trace context
// of the caller that first started (or enqueued) the workflow, as the
// observers' TraceCarrier pairs, so that its recovery (or dequeue) in any
// process continues that trace. The key cannot collide with DBOS's own use
// of the column, which is the application's.
const traceAttribute = "dbosgen.trace_context"

// maxCarrier bounds a stored trace context (a traceparent is 55 bytes; W3C
// caps tracestate at 32 entries and baggage at 8192 bytes).
const maxCarrier = 8192

// traceAttributes returns the attributes to write when starting a workflow
// from ctx: the observers' trace carrier as JSON object text, or "" for
// none. Pairs the column cannot hold (PostgreSQL's JSONB refuses NUL,
// neither engine stores invalid UTF-8 faithfully) are dropped, and a carrier
// past maxCarrier is not stored at all: a start never fails for its trace.
func (rt *Runtime) traceAttributes(ctx context.Context) string {
	carrier, size := map[string]string{}, 0
	for k, v := range rt.obs.TraceCarrier(ctx) {
		if k != "" && storable(k) && storable(v) {
			carrier[k] = v
			size += len(k) + len(v)
		}
	}
	if len(carrier) == 0 || size > maxCarrier {
		return ""
	}
	b, err := json.Marshal(map[string]map[string]string{traceAttribute: carrier})
	if err != nil {
		return ""
	}
	return string(b)
}

func storable(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// traceCarrierOf reads the trace carrier back from a row's attributes; nil
// when there is none or it does not decode (the column is shared with other
// tools: what they wrote there is not dbosgen's to judge).
func traceCarrierOf(attributes string) map[string]string {
	if attributes == "" {
		return nil
	}
	var attrs map[string]json.RawMessage
	if json.Unmarshal([]byte(attributes), &attrs) != nil {
		return nil
	}
	raw, ok := attrs[traceAttribute]
	if !ok {
		return nil
	}
	var carrier map[string]string
	if json.Unmarshal(raw, &carrier) != nil || len(carrier) == 0 {
		return nil
	}
	return carrier
}
