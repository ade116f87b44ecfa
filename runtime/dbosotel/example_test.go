package dbosotel_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/dbosgen/dbosgen/runtime/dbosimpl"
	"github.com/dbosgen/dbosgen/runtime/dbosotel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// checkout and reserve stand for what you write:
//
//	//dbos:workflow
//	func checkout(ctx context.Context, order int) (string, error) { return reserve(ctx, order) }
//
//	//dbos:step
//	func reserve(ctx context.Context, order int) (string, error) { ... }
//
// and checkoutWorkflow for what `go generate` makes of them (in
// dbos_gen.go, behind a typed checkout wrapper).
type checkoutArgs struct{ Order int }

var checkoutWorkflow = dbosimpl.RegisterWorkflow(dbosimpl.WorkflowOptions{Name: "example.checkout"},
	func(ctx context.Context, a checkoutArgs) (string, error) {
		return dbosimpl.RunStep(ctx, &dbosimpl.StepOptions{Name: "reserve"}, func(ctx context.Context) (string, error) {
			return fmt.Sprintf("order %d reserved", a.Order), nil
		})
	})

func Example() {
	ctx := context.Background()
	// Your providers; in production they export to a collector (OTLP),
	// here the spans are kept in memory to print them.
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(ctx)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer mp.Shutdown(ctx)

	dir, err := os.MkdirTemp("", "dbosotel-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	cfg := dbos.Config{AppName: "shop", SystemDatabaseURL: filepath.Join(dir, "shop.sqlite"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cfg.Observer = dbosotel.New(tp, mp) // the one line
	rt, err := dbos.Launch(ctx, cfg)
	if err != nil {
		panic(err)
	}
	defer rt.Shutdown(ctx)

	// A request handler's span: the workflow runs under it, and so would
	// its recovery after a crash.
	ctx, request := tp.Tracer("shop").Start(ctx, "POST /checkout")
	receipt, err := checkoutWorkflow.Run(ctx, checkoutArgs{Order: 42})
	request.End()
	fmt.Println(receipt, err)
	for _, s := range spans.GetSpans() {
		fmt.Println(s.Name)
	}
	// Output:
	// order 42 reserved <nil>
	// step reserve
	// workflow example.checkout
	// POST /checkout
}
