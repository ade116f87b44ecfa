package interop

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/dbos-inc/dbos-transact-golang/dbos"
)

// The DBOS SDK application: one workflow, registered by name, with a step
// that records a value and a step that waits, watching its context, until
// its key is released. It mirrors app.Block on the DBOS side.

const (
	sdkBlockName   = "interop.sdkBlock"
	sdkPrepareName = "interop.sdkPrepare"
	sdkWaitName    = "interop.sdkWait"
)

func sdkBlock(ctx sdk.Context, key string) (string, error) {
	p, err := sdk.RunAsStep(ctx, func(context.Context) (string, error) {
		sdkCalls.add("prepare:" + key)
		return "sdk prepared " + key, nil
	}, sdk.WithStepName(sdkPrepareName))
	if err != nil {
		return "", err
	}
	r, err := sdk.RunAsStep(ctx, func(ctx context.Context) (string, error) {
		g := sdkGate(key)
		g.enterOnce.Do(func() { close(g.entered) })
		for {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-g.release:
				return "sdk released " + key, nil
			case <-time.After(20 * time.Millisecond):
			}
		}
	}, sdk.WithStepName(sdkWaitName))
	if err != nil {
		return "", err
	}
	return p + ", " + r, nil
}

type sdkGateState struct {
	entered     chan struct{}
	enterOnce   sync.Once
	release     chan struct{}
	releaseOnce sync.Once
}

var sdkGates sync.Map

func sdkGate(key string) *sdkGateState {
	g, _ := sdkGates.LoadOrStore(key, &sdkGateState{entered: make(chan struct{}), release: make(chan struct{})})
	return g.(*sdkGateState)
}

func sdkRelease(key string) {
	g := sdkGate(key)
	g.releaseOnce.Do(func() { close(g.release) })
}

type sdkCounter struct {
	sync.Mutex
	n map[string]int
}

var sdkCalls = &sdkCounter{n: map[string]int{}}

func (c *sdkCounter) add(label string) {
	c.Lock()
	c.n[label]++
	c.Unlock()
}

func sdkCallCount(label string) int {
	sdkCalls.Lock()
	defer sdkCalls.Unlock()
	return sdkCalls.n[label]
}

// newSDKExecutor makes a DBOS executor of sdkApp on url with sdkBlock
// registered and launches it. It is shut down when t ends, or earlier with
// shutdownSDK.
func newSDKExecutor(t *testing.T, url string) sdk.Context {
	t.Helper()
	dctx, err := newSDKContext(context.Background(), url, testLogger(t, "the DBOS executor launched at "+time.Now().Format("15:04:05.000")))
	if err != nil {
		t.Fatalf("DBOS SDK dbos.NewContext(AppName %q): %v", sdkApp, err)
	}
	if err := sdk.Launch(dctx); err != nil {
		t.Fatalf("DBOS SDK Launch (AppName %q) on the shared database: %v", sdkApp, err)
	}
	t.Cleanup(func() { shutdownSDK(t, dctx) })
	return dctx
}

var sdkShutdowns sync.Map // sdk.Context -> *sync.Once

func shutdownSDK(t *testing.T, dctx sdk.Context) {
	once, _ := sdkShutdowns.LoadOrStore(dctx, new(sync.Once))
	once.(*sync.Once).Do(func() {
		if err := sdk.Shutdown(dctx, 10*time.Second); err != nil {
			t.Errorf("DBOS executor Shutdown: %v", err)
		}
	})
}

func newSDKContext(ctx context.Context, url string, logger *slog.Logger) (sdk.Context, error) {
	dctx, err := sdk.NewContext(ctx, sdk.Config{
		AppName:                sdkApp,
		DatabaseURL:            url,
		ExecutorID:             executorID,
		ApplicationVersion:     appVersion,
		Logger:                 logger,
		SystemDBStartupTimeout: 30 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	sdk.RegisterWorkflow(dctx, sdkBlock, sdk.WithWorkflowName(sdkBlockName))
	return dctx, nil
}

// Child processes: the test binary runs itself with childEnv set to play one
// role, and is killed with SIGKILL by the parent.
const (
	childEnv   = "INTEROP_CHILD"
	childURL   = "INTEROP_CHILD_URL"
	childID    = "INTEROP_CHILD_WORKFLOW_ID"
	childReady = "READY"
)

func runChild(role string) int {
	switch role {
	case "sdk-block":
		return childSDKBlock()
	case "sdk-as-gen":
		return childSDKAsGen()
	}
	fmt.Fprintf(os.Stderr, "unknown child role %q\n", role)
	return 2
}

// childSDKBlock launches a DBOS executor, starts sdkBlock, prints READY once
// the workflow waits in its second step, and waits to be killed.
func childSDKBlock() int {
	ctx := context.Background()
	dctx, err := newSDKContext(ctx, os.Getenv(childURL), childLogger)
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: DBOS NewContext: %v\n", err)
		return 1
	}
	if err := sdk.Launch(dctx); err != nil {
		fmt.Fprintf(os.Stderr, "child: DBOS Launch: %v\n", err)
		return 1
	}
	id := os.Getenv(childID)
	if _, err := sdk.RunWorkflow(dctx, sdkBlock, id, sdk.WithWorkflowID(id)); err != nil {
		fmt.Fprintf(os.Stderr, "child: DBOS RunWorkflow: %v\n", err)
		return 1
	}
	select {
	case <-sdkGate(id).entered:
	case <-time.After(30 * time.Second):
		fmt.Fprintln(os.Stderr, "child: the workflow never reached its waiting step")
		return 1
	}
	fmt.Println(childReady)
	select {} // until SIGKILL
}

// childSDKAsGen is a DBOS executor of genApp, dbosgen's application: it
// starts app.Greet's name through DBOS's own code, with the single input
// "Grace", twice: as ID+"-DBOS_JSON" in the Go SDK's default DBOS_JSON and as
// ID+"-portable_json" with WithPortableWorkflow. It prints READY once both
// bodies run, before any step, and waits to be killed. dbosgen must then
// recover both from the rows and inputs DBOS wrote.
func childSDKAsGen() int {
	ctx := context.Background()
	dctx, err := sdk.NewContext(ctx, sdk.Config{
		AppName:            genApp,
		DatabaseURL:        os.Getenv(childURL),
		ExecutorID:         executorID,
		ApplicationVersion: appVersion,
		Logger:             childLogger,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "child: DBOS NewContext: %v\n", err)
		return 1
	}
	sdk.RegisterWorkflow(dctx, sdkGreetAsGen, sdk.WithWorkflowName(appPkg+".Greet"))
	if err := sdk.Launch(dctx); err != nil {
		fmt.Fprintf(os.Stderr, "child: DBOS Launch: %v\n", err)
		return 1
	}
	id := os.Getenv(childID)
	for _, format := range []string{"DBOS_JSON", "portable_json"} {
		opts := []sdk.WorkflowOption{sdk.WithWorkflowID(id + "-" + format)}
		if format == "portable_json" {
			opts = append(opts, sdk.WithPortableWorkflow())
		}
		if _, err := sdk.RunWorkflow(dctx, sdkGreetAsGen, "Grace", opts...); err != nil {
			fmt.Fprintf(os.Stderr, "child: DBOS RunWorkflow: %v\n", err)
			return 1
		}
	}
	for range 2 {
		select {
		case <-sdkGreetEntered:
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "child: the workflows never started")
			return 1
		}
	}
	fmt.Println(childReady)
	select {} // until SIGKILL
}

var sdkGreetEntered = make(chan struct{}, 2)

// sdkGreetAsGen stands for app.Greet in a DBOS executor: it records nothing
// and waits in its body.
func sdkGreetAsGen(ctx sdk.Context, name string) (string, error) {
	sdkGreetEntered <- struct{}{}
	<-ctx.Done()
	return "", ctx.Err()
}

// crashSDKChild runs a DBOS executor in a child process, lets it start
// sdkBlock with ID (and key) id, and kills it with SIGKILL while the workflow
// waits in its second step: the workflow is left PENDING with one step
// recorded, as after a crash.
func crashSDKChild(t *testing.T, url, id string) {
	t.Helper()
	crashChild(t, "sdk-block", url, id)
}

// crashChild runs the test binary as a child process in role (with extra
// environment variables env), waits for it to print READY, and kills it with
// SIGKILL.
func crashChild(t *testing.T, role, url, id string, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(withoutEnv(os.Environ(), "DBOS__APPVERSION", "DBOS__VMID"),
		childEnv+"="+role, childURL+"="+url, childID+"="+id)
	cmd.Env = append(cmd.Env, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the DBOS child executor: %v", err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == childReady {
				ready <- true
				io.Copy(io.Discard, stdout)
				return
			}
		}
		ready <- false
	}()
	var ok bool
	select {
	case ok = <-ready:
	case <-time.After(60 * time.Second):
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if !ok {
		t.Fatalf("the DBOS child executor (%s) did not get workflow %s to its waiting point; its stderr:\n%s", role, id, stderr.String())
	}
}
