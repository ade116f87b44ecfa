package torture

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	flagDuration = flag.Duration("torture.duration", 60*time.Second, "how long to inject faults under load")
	flagWorkers  = flag.Int("torture.workers", 4, "worker processes (distinct executor IDs) at the start")
	flagRestarts = flag.Int("torture.pgrestarts", -1,
		"PostgreSQL server restarts to inject; -1: none for runs shorter than 3m (the server is shared with tests running "+
			"concurrently; the proxy's outage plays the restart instead), else one per 2m30s")
	flagKeep  = flag.Bool("torture.keep", false, "keep the working directory (worker logs, ledgers)")
	flagLease = flag.Duration("torture.lease", 2*time.Second,
		"the workers' executor lease: short, so that the work of a dead or paused worker is adopted while the load runs")
)

// raceEnabled is set by race_test.go; workers are then built with -race too.
var raceEnabled bool

const (
	workerPkg   = "github.com/dbosgen/dbosgen/runtime/internal/torture/worker"
	stepName    = workerPkg + ".effect"
	txName      = workerPkg + ".deposit"
	orderName   = workerPkg + ".order"
	childName   = workerPkg + ".child"
	appName     = "torture-worker" // application_name of every worker connection
	inFlightPer = 8                // unfinished workflows per worker the driver keeps submitted
	queueName   = "torture"        // worker.workQueue
	queuedShare = 3                // one workflow in queuedShare goes through the queue
)

// job mirrors worker.Job; f and childJob mirror the worker's arithmetic, so
// the driver knows every workflow's expected result.
type job struct {
	Steps, Async, Txs int
	Child             bool
	Seed              int
}

func f(v int) int        { return v * v % 997 }
func childJob(j job) job { return job{Steps: 2, Async: 1, Txs: 1, Seed: j.Seed + 1000} }
func (j job) stepKeys() []string {
	var ks []string
	for i := 0; i < j.Steps; i++ {
		ks = append(ks, fmt.Sprintf("s%d", i))
	}
	for i := 0; i < j.Async; i++ {
		ks = append(ks, fmt.Sprintf("a%d", i))
	}
	return ks
}
func (j job) sum() int {
	s := 0
	for i := 0; i < j.Steps; i++ {
		s += f(j.Seed + i)
	}
	for i := 0; i < j.Async; i++ {
		s += f(j.Seed + 100 + i)
	}
	return s
}

type wf struct {
	id        string
	job       job
	queued    bool // enqueued on queueName rather than started
	slot      int
	acked     bool
	durable   bool // not acknowledged, but its row was found: its worker died after the start took
	sentAt    time.Time
	sends     int
	lastNack  string
	submitted time.Time
}

// fenced reports whether the worker's runtime lost its executor lease and
// stopped its workflows (its log says so).
func (p *proc) fenced() bool {
	b, err := os.ReadFile(p.logPath)
	return err == nil && bytes.Contains(b, []byte("executor lease lost: stopping"))
}

type proc struct {
	n, slot  int
	exec     string
	twin     bool
	cmd      *exec.Cmd
	pid      int
	logPath  string
	stdinMu  sync.Mutex
	stdin    io.WriteCloser
	ready    chan struct{}
	done     chan struct{}
	spawned  time.Time
	exited   time.Time // set before done is closed
	exitErr  error
	killed   bool // by the driver, with SIGKILL
	gBefore  int
	gAfter   int
	gReport  bool
	quitSent bool
	paused   bool        // SIGSTOPped now
	pauses   []pauseSpan // every SIGSTOP and its SIGCONT
}

func (p *proc) send(line string) bool {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	_, err := io.WriteString(p.stdin, line+"\n")
	return err == nil
}

func (p *proc) isReady() bool {
	select {
	case <-p.ready:
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	default:
		return false
	}
}

type driver struct {
	t         *testing.T
	dir, bin  string
	dbURL     string
	dbName    string
	workerURL string
	pool      *pgxpool.Pool
	proxy     *Proxy
	began     time.Time

	mu         sync.Mutex
	procs      []*proc
	current    map[int]*proc
	slots      int
	retired    map[int]bool // slots whose worker died for good (never restarted)
	adoptions  []*adoption
	faultWork  sync.WaitGroup // faults still under way (a pause, an adoption being watched)
	wfs        map[string]*wf
	ids        []string
	quitting   bool
	faults     map[string]int
	events     []string
	violations []string
	notes      []string
	launchFail int
	nacks      int
	resends    int
	supervised sync.WaitGroup
}

func (d *driver) event(format string, args ...any) {
	msg := fmt.Sprintf("%7.1fs ", time.Since(d.began).Seconds()) + fmt.Sprintf(format, args...)
	d.mu.Lock()
	d.events = append(d.events, msg)
	d.mu.Unlock()
	d.t.Log(msg)
}

func (d *driver) violation(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.violations = append(d.violations, fmt.Sprintf(format, args...))
}

func (d *driver) fault(kind string, n int) {
	d.mu.Lock()
	d.faults[kind] += n
	d.mu.Unlock()
}

// TestTorture runs generated workflows in several worker processes under
// faults for -torture.duration, then checks that every workflow finished with
// the right result, every transaction applied exactly once, every step ran
// again only where a crash (or a twin executor) explains it, nothing is
// stuck PENDING, and nothing leaked.
func TestTorture(t *testing.T) {
	if testing.Short() {
		t.Skip("torture test skipped with -short")
	}
	d := &driver{t: t, current: map[int]*proc{}, retired: map[int]bool{}, wfs: map[string]*wf{}, faults: map[string]int{}}
	var err error
	d.dir, err = os.MkdirTemp("", "dbosgen-torture-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if *flagKeep || t.Failed() {
			t.Logf("worker logs and ledgers kept in %s", d.dir)
			return
		}
		os.RemoveAll(d.dir)
	})

	d.build()
	d.dbURL = dbtest.Postgres(t)
	d.setupDB()
	d.began = time.Now()

	for i := 0; i < *flagWorkers; i++ {
		d.addSlot()
	}
	d.waitAllReady(60 * time.Second)
	d.event("%d workers ready", *flagWorkers)

	stopSubmit := make(chan struct{})
	submitDone := make(chan struct{})
	go func() { defer close(submitDone); d.submitLoop(stopSubmit) }()
	d.faultLoop(*flagDuration)
	close(stopSubmit)
	<-submitDone
	d.event("faults stopped; draining")

	d.drain()
	d.quitAll()
	d.checkConnections()
	d.analyze()
}

// build compiles the worker (with -race when the test has it).
func (d *driver) build() {
	d.bin = filepath.Join(d.dir, "worker")
	args := []string{"build", "-o", d.bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, workerPkg)
	cmd := exec.Command("go", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		d.t.Fatalf("building the worker: %v\n%s", err, out)
	}
}

func (d *driver) setupDB() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(d.dbURL)
	if err != nil {
		d.t.Fatal(err)
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = "torture-driver"
	if d.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(d.pool.Close)
	d.dbName = cfg.ConnConfig.Database
	// No unique key: a transaction applied twice must show, not fail.
	if _, err := d.pool.Exec(ctx, `CREATE TABLE torture_app (id BIGSERIAL PRIMARY KEY, workflow_id TEXT NOT NULL,
		key TEXT NOT NULL, amount INT NOT NULL, exec TEXT NOT NULL)`); err != nil {
		d.t.Fatal(err)
	}
	if d.proxy, err = NewProxy(fmt.Sprintf("%s:%d", cfg.ConnConfig.Host, cfg.ConnConfig.Port)); err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(d.proxy.Close)
	u, err := url.Parse(d.dbURL)
	if err != nil {
		d.t.Fatal(err)
	}
	u.Host = d.proxy.Addr()
	q := u.Query()
	q.Set("application_name", appName)
	q.Set("pool_max_conns", "8") // the server is shared: a few connections per worker
	u.RawQuery = q.Encode()
	d.workerURL = u.String()
}

// --- processes -------------------------------------------------------------

func execID(slot int) string { return fmt.Sprintf("exec-%d", slot) }

func (d *driver) spawn(slot int, executor string, twin bool) *proc {
	d.mu.Lock()
	n := len(d.procs)
	p := &proc{n: n, slot: slot, exec: executor, twin: twin, ready: make(chan struct{}), done: make(chan struct{}),
		logPath: filepath.Join(d.dir, fmt.Sprintf("worker-%03d.log", n))}
	d.procs = append(d.procs, p)
	d.mu.Unlock()

	logf, err := os.Create(p.logPath)
	if err != nil {
		d.t.Fatal(err)
	}
	p.cmd = exec.Command(d.bin, "-db", d.workerURL, "-executor", executor, "-lease", flagLease.String(),
		"-ledger", filepath.Join(d.dir, fmt.Sprintf("ledger-%03d.log", n)))
	p.cmd.Stderr = logf
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		d.t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		d.t.Fatal(err)
	}
	p.spawned = time.Now()
	if err := p.cmd.Start(); err != nil {
		d.t.Fatalf("starting worker: %v", err)
	}
	p.pid = p.cmd.Process.Pid
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.handle(p, sc.Text())
		}
		err := p.cmd.Wait()
		logf.Close()
		d.mu.Lock()
		p.exitErr, p.exited = err, time.Now()
		d.mu.Unlock()
		close(p.done)
	}()
	return p
}

func (d *driver) handle(p *proc, line string) {
	fs := strings.Fields(line)
	if len(fs) == 0 {
		return
	}
	switch fs[0] {
	case "ready":
		close(p.ready)
		if !p.twin {
			d.resubmit(p, 0)
		}
	case "ack":
		d.mu.Lock()
		if w := d.wfs[fs[1]]; w != nil {
			w.acked = true
		}
		d.mu.Unlock()
	case "nack":
		msg := strings.Join(fs[2:], " ")
		d.mu.Lock()
		d.nacks++
		quitting := d.quitting || p.quitSent
		if w := d.wfs[fs[1]]; w != nil {
			w.lastNack = msg
		}
		d.mu.Unlock()
		if !quitting {
			d.violation("starting workflow %s on worker %d (pid %d) failed: %s", fs[1], p.n, p.pid, msg)
		}
	case "goroutines":
		d.mu.Lock()
		p.gBefore, _ = strconv.Atoi(fs[1])
		p.gAfter, _ = strconv.Atoi(fs[2])
		p.gReport = true
		d.mu.Unlock()
	}
}

// addSlot adds a worker with a new executor ID, kept running (restarted
// after every kill) until quitAll.
func (d *driver) addSlot() int {
	d.mu.Lock()
	slot := d.slots
	d.slots++
	d.mu.Unlock()
	d.supervised.Add(1)
	go d.supervise(slot)
	return slot
}

func (d *driver) supervise(slot int) {
	defer d.supervised.Done()
	for {
		d.mu.Lock()
		if d.quitting {
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
		p := d.spawn(slot, execID(slot), false)
		d.mu.Lock()
		d.current[slot] = p
		d.mu.Unlock()
		<-p.done
		d.mu.Lock()
		quitting, killed, retired := d.quitting, p.killed, d.retired[slot]
		d.mu.Unlock()
		if quitting && (p.quitSent || exitCode(p.exitErr) == 3) {
			return
		}
		if retired {
			return // its executor died for good: its work is adopted
		}
		if !killed {
			if code := exitCode(p.exitErr); code == 3 {
				// Launch could not reach the database (an outage): a clear
				// error, as designed; try again. Once connected, though,
				// Launch must ride out an outage (migrations, recovery).
				msg := launchError(p.logPath)
				d.mu.Lock()
				d.launchFail++
				d.mu.Unlock()
				// A twin holding this executor ID's lease (see twin) refuses
				// the replacement until the twin quits: retried too.
				if !strings.Contains(msg, "cannot reach") && !strings.Contains(msg, "executor ID in use") {
					d.violation("worker %d (pid %d): Launch failed after connecting: %s", p.n, p.pid, msg)
				}
				time.Sleep(300 * time.Millisecond)
				continue
			}
			d.violation("worker %d (pid %d, %s) exited unexpectedly: %v\n%s", p.n, p.pid, p.exec, p.exitErr, tail(p.logPath, 30))
		}
		time.Sleep(rand.N(300 * time.Millisecond))
	}
}

// launchError is the error a worker printed when Launch failed.
func launchError(logPath string) string {
	b, _ := os.ReadFile(logPath)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "launch: ") {
			return strings.TrimPrefix(l, "launch: ")
		}
	}
	return "(no launch error printed)"
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -2
}

func (d *driver) waitAllReady(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		n := 0
		for s := 0; s < d.slots; s++ {
			if p := d.current[s]; d.retired[s] || p != nil && p.isReady() {
				n++
			}
		}
		all := n == d.slots
		d.mu.Unlock()
		if all {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("workers not ready after %v\n%s", timeout, d.logTails())
}

// kill SIGKILLs the current worker of slot; its supervisor restarts it.
func (d *driver) kill(slot int) *proc {
	d.mu.Lock()
	p := d.current[slot]
	if p == nil || !p.isReady() || p.killed || p.paused {
		d.mu.Unlock()
		return nil
	}
	p.killed = true
	d.mu.Unlock()
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	<-p.done
	return p
}

func (d *driver) readySlots() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	var s []int
	for slot := 0; slot < d.slots; slot++ {
		if p := d.current[slot]; p != nil && p.isReady() && !p.killed && !p.paused && !d.retired[slot] {
			s = append(s, slot)
		}
	}
	return s
}

// --- load ------------------------------------------------------------------

func (d *driver) submitLoop(stop <-chan struct{}) {
	seq := 0
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var pending int
	var lastCount time.Time
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if time.Since(lastCount) > 500*time.Millisecond {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			var n int
			err := d.pool.QueryRow(ctx, `SELECT count(*) FROM dbos.workflow_status WHERE status IN ('PENDING', 'ENQUEUED') AND name = $1`,
				orderName).Scan(&n)
			cancel()
			if err == nil {
				pending, lastCount = n, time.Now()
			}
		}
		d.mu.Lock()
		unacked := 0
		for _, id := range d.ids {
			if !d.wfs[id].acked {
				unacked++
			}
		}
		limit := inFlightPer * (d.slots - len(d.retired))
		d.mu.Unlock()
		if pending+unacked >= limit {
			continue
		}
		slots := d.readySlots()
		if len(slots) == 0 {
			continue
		}
		seq++
		j := job{Steps: 2 + rand.N(5), Async: rand.N(4), Txs: 1 + rand.N(3), Child: rand.N(2) == 0, Seed: rand.N(10000)}
		w := &wf{id: fmt.Sprintf("wf-%05d", seq), job: j, queued: rand.N(queuedShare) == 0, slot: slots[rand.N(len(slots))],
			submitted: time.Now()}
		d.mu.Lock()
		d.wfs[w.id] = w
		d.ids = append(d.ids, w.id)
		p := d.current[w.slot]
		d.mu.Unlock()
		d.sendStart(p, w)
		pending++
		if seq%10 == 0 {
			// Every so often, resubmit workflows whose start was never
			// acknowledged (their worker died first).
			for _, p := range d.currentProcs() {
				d.resubmit(p, 3*time.Second)
			}
		}
	}
}

func (d *driver) currentProcs() []*proc {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ps []*proc
	for s := 0; s < d.slots; s++ {
		if p := d.current[s]; p != nil && p.isReady() && !d.retired[s] {
			ps = append(ps, p)
		}
	}
	return ps
}

func (d *driver) sendStart(p *proc, w *wf) {
	j := w.job
	child := 0
	if j.Child {
		child = 1
	}
	d.mu.Lock()
	w.sentAt = time.Now()
	w.sends++
	if w.sends > 1 {
		d.resends++
	}
	d.mu.Unlock()
	cmd := "start"
	if w.queued {
		cmd = "enqueue"
	}
	p.send(fmt.Sprintf("%s %s %d %d %d %d %d", cmd, w.id, j.Steps, j.Async, j.Txs, child, j.Seed))
}

// resubmit sends the unacknowledged workflows of p's slot, last sent more
// than olderThan ago, to p, unless their row exists: the start took before
// its worker died, and recovery or an adopter finishes it. Starting a
// PENDING workflow by its ID makes the caller's executor its owner, so a
// start sent again after an adoption would run it in two live processes;
// only a workflow the database never saw is started again.
func (d *driver) resubmit(p *proc, olderThan time.Duration) {
	d.mu.Lock()
	var todo []*wf
	var ids []string
	for _, id := range d.ids {
		w := d.wfs[id]
		if w.slot == p.slot && !w.acked && time.Since(w.sentAt) > olderThan {
			todo = append(todo, w)
			ids = append(ids, w.id)
		}
	}
	d.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, err := d.pool.Query(ctx, `SELECT workflow_uuid FROM dbos.workflow_status WHERE workflow_uuid = ANY($1)`, ids)
	if err != nil {
		return // the next round looks again
	}
	found := map[string]bool{}
	for rows.Next() {
		var id string
		if rows.Scan(&id) == nil {
			found[id] = true
		}
	}
	if rows.Err() != nil {
		return
	}
	for _, w := range todo {
		if found[w.id] {
			d.mu.Lock()
			if !w.acked {
				w.acked, w.durable = true, true
			}
			d.mu.Unlock()
			continue
		}
		d.sendStart(p, w)
	}
}

// --- faults ----------------------------------------------------------------

type schedule struct {
	next       time.Time
	minE, maxE time.Duration
}

func (s *schedule) due(now time.Time) bool {
	if now.Before(s.next) {
		return false
	}
	s.next = now.Add(s.minE + rand.N(s.maxE-s.minE+1))
	return true
}

func every(minE, maxE time.Duration) *schedule {
	return &schedule{next: time.Now().Add(minE + rand.N(maxE-minE+1)), minE: minE, maxE: maxE}
}

func (d *driver) faultLoop(dur time.Duration) {
	start := time.Now()
	end := start.Add(dur)
	at := func(frac float64) time.Time { return start.Add(time.Duration(float64(dur) * frac)) }

	restarts := *flagRestarts
	if restarts < 0 {
		restarts = 0
		if dur >= 3*time.Minute {
			restarts = int(dur / (150 * time.Second))
		}
	}
	canRestart, why := d.canRestartPostgres()
	if restarts > 0 && !canRestart {
		d.t.Logf("!!!!!!!! PostgreSQL restart fault SKIPPED: %s !!!!!!!!", why)
		d.notes = append(d.notes, "PostgreSQL restart fault SKIPPED: "+why)
		restarts = 0
	}
	if restarts == 0 && canRestart {
		d.notes = append(d.notes, fmt.Sprintf("no PostgreSQL server restart in a %v run (shared server; -torture.pgrestarts=N forces it); "+
			"the proxy outage plays it for the workers", dur))
	}
	var restartAt []time.Time
	for i := 0; i < restarts; i++ {
		restartAt = append(restartAt, at(float64(i+1)/float64(restarts+1)+0.05))
	}
	// Outages through the proxy: one per ~40s, at least one.
	var outageAt []time.Time
	nOut := max(1, int(dur/(40*time.Second)))
	for i := 0; i < nOut; i++ {
		outageAt = append(outageAt, at((float64(i)+0.5)/float64(nOut)))
	}
	twinAt := []time.Time{at(0.2)}
	if dur >= 3*time.Minute {
		twinAt = append(twinAt, at(0.65))
	}
	newSlotAt := []time.Time{at(0.45)}
	// Executor deaths and pauses past the lease: one each per ~40s, at least
	// one, apart from each other and from the outages.
	var deathAt, pauseAt []time.Time
	nAdopt := max(1, int(dur/(40*time.Second)))
	for i := 0; i < nAdopt; i++ {
		deathAt = append(deathAt, at((float64(i)+0.2)/float64(nAdopt)))
		pauseAt = append(pauseAt, at((float64(i)+0.8)/float64(nAdopt)))
	}
	relaunchOutages := every(8*time.Second, 16*time.Second)

	kills := every(1500*time.Millisecond, 4*time.Second)
	terms := every(2*time.Second, 6*time.Second)
	cuts := every(1500*time.Millisecond, 4*time.Second)
	acks := every(1*time.Second, 3*time.Second)

	pop := func(ts *[]time.Time, now time.Time) bool {
		if len(*ts) > 0 && !now.Before((*ts)[0]) {
			*ts = (*ts)[1:]
			return true
		}
		return false
	}
	for now := time.Now(); now.Before(end); now = time.Now() {
		time.Sleep(50 * time.Millisecond)
		switch {
		case pop(&restartAt, now):
			d.restartPostgres()
		case pop(&outageAt, now):
			dd := time.Second + rand.N(2*time.Second)
			d.event("proxy outage for %v", dd.Round(time.Millisecond))
			if err := d.proxy.Outage(dd); err != nil {
				d.t.Fatalf("proxy: %v", err)
			}
			d.fault("proxy outage", 1)
		case pop(&twinAt, now):
			d.twin()
		case pop(&newSlotAt, now):
			d.newSlotDuringRecovery()
		case pop(&deathAt, now):
			if !d.executorDeath() {
				deathAt = append([]time.Time{now.Add(200 * time.Millisecond)}, deathAt...) // too few workers up: soon again
			}
		case pop(&pauseAt, now):
			if !d.pauseWorker() {
				pauseAt = append([]time.Time{now.Add(200 * time.Millisecond)}, pauseAt...)
			}
		case relaunchOutages.due(now):
			d.outageDuringRelaunch()
		case kills.due(now):
			if s := d.readySlots(); len(s) > 0 {
				if p := d.kill(s[rand.N(len(s))]); p != nil {
					d.fault("SIGKILL", 1)
				}
			}
		case terms.due(now):
			d.terminateBackends(1 + rand.N(4))
		case cuts.due(now):
			d.fault("connection cut (proxy)", d.proxy.Cut(1+rand.N(3)))
		case acks.due(now):
			d.proxy.ArmAckLoss(1+rand.N(2), true)
			d.proxy.ArmAckLoss(rand.N(2), false)
		}
	}
	// Every paused worker continued, every adoption watched to its end.
	d.faultWork.Wait()
}

func (d *driver) terminateBackends(n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var k int
	err := d.pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM (
		SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2 ORDER BY random() LIMIT $3) s`,
		d.dbName, appName, n).Scan(&k)
	if err == nil {
		d.fault("pg_terminate_backend", k)
	}
}

func (d *driver) canRestartPostgres() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "not running as root"
	}
	if _, err := exec.LookPath("pg_ctlcluster"); err != nil {
		return false, "pg_ctlcluster not found"
	}
	u, err := url.Parse(dbtest.AdminURL())
	if err != nil || (u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost") {
		return false, "the test server is not local"
	}
	if _, _, err := pgCluster(); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// pgCluster finds the local cluster's version and name (/etc/postgresql/<v>/<name>).
func pgCluster() (string, string, error) {
	vs, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(vs) == 0 {
		return "", "", fmt.Errorf("no cluster under /etc/postgresql")
	}
	v := vs[len(vs)-1].Name()
	if _, err := os.Stat(filepath.Join("/etc/postgresql", v, "main")); err == nil {
		return v, "main", nil
	}
	cs, err := os.ReadDir(filepath.Join("/etc/postgresql", v))
	if err != nil || len(cs) == 0 {
		return "", "", fmt.Errorf("no cluster under /etc/postgresql/%s", v)
	}
	return v, cs[0].Name(), nil
}

func (d *driver) restartPostgres() {
	v, name, _ := pgCluster()
	began := time.Now()
	out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", v, name, "restart", "-m", "fast").CombinedOutput()
	if err != nil {
		d.t.Logf("!!!!!!!! pg_ctlcluster restart failed: %v\n%s", err, out)
		d.notes = append(d.notes, fmt.Sprintf("pg_ctlcluster restart failed: %v", err))
		return
	}
	// Wait until it takes connections again.
	for i := 0; i < 300; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = d.pool.Ping(ctx)
		cancel()
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.fault("PostgreSQL restart", 1)
	d.event("PostgreSQL %s/%s restarted (down %v)", v, name, time.Since(began).Round(time.Millisecond))
}

// twin kills a worker and, at once, starts a second process with the same
// executor ID, racing the killed worker's replacement: executor leases let
// one of the two launch and refuse the other (ErrExecutorInUse, exit 3)
// until it is gone. The twin is then shut down gracefully.
func (d *driver) twin() {
	s := d.readySlots()
	if len(s) == 0 {
		return
	}
	slot := s[rand.N(len(s))]
	d.kill(slot)
	d.fault("SIGKILL", 1)
	tw := d.spawn(-1, execID(slot), true)
	d.fault("two workers with one executor ID", 1)
	d.event("twin worker %d (pid %d) launched with executor ID %s while it recovers", tw.n, tw.pid, execID(slot))
	go func() {
		time.Sleep(4*time.Second + rand.N(4*time.Second))
		d.mu.Lock()
		tw.quitSent = true
		d.mu.Unlock()
		tw.send("quit")
		<-tw.done
		if c := exitCode(tw.exitErr); c != 0 && c != 3 {
			d.violation("twin worker %d (pid %d) exited with %v\n%s", tw.n, tw.pid, tw.exitErr, tail(tw.logPath, 30))
		}
	}()
}

// killAndAwaitReplacement SIGKILLs a random ready worker and waits up to a
// second for its replacement to start; ok is false when no worker is ready.
func (d *driver) killAndAwaitReplacement() (slot int, ok bool) {
	s := d.readySlots()
	if len(s) == 0 {
		return 0, false
	}
	slot = s[rand.N(len(s))]
	old := d.kill(slot)
	d.fault("SIGKILL", 1)
	for i := 0; i < 100; i++ {
		d.mu.Lock()
		p := d.current[slot]
		d.mu.Unlock()
		if p != old {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return slot, true
}

// outageDuringRelaunch kills a worker and cuts the database off while its
// replacement launches and recovers.
func (d *driver) outageDuringRelaunch() {
	if _, ok := d.killAndAwaitReplacement(); !ok {
		return
	}
	time.Sleep(rand.N(150 * time.Millisecond))
	dd := 500*time.Millisecond + rand.N(1500*time.Millisecond)
	if err := d.proxy.Outage(dd); err != nil {
		d.t.Fatalf("proxy: %v", err)
	}
	d.fault("proxy outage while a worker relaunches", 1)
}

// newSlotDuringRecovery kills a worker and launches a worker with a new
// executor ID while the killed one's replacement is recovering.
func (d *driver) newSlotDuringRecovery() {
	slot, ok := d.killAndAwaitReplacement()
	if !ok {
		return
	}
	n := d.addSlot()
	d.fault("worker launched while another recovers", 1)
	d.event("worker %s launched while %s recovers", execID(n), execID(slot))
}

// --- analysis --------------------------------------------------------------

type ledgerLine struct {
	kind, wf, key, exec string
	pid                 int
	at                  time.Time
}

func readLedgers(dir string) ([]ledgerLine, error) {
	files, err := filepath.Glob(filepath.Join(dir, "ledger-*.log"))
	if err != nil {
		return nil, err
	}
	var out []ledgerLine
	for _, fn := range files {
		b, err := os.ReadFile(fn)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) != 5 {
				continue // a line cut by SIGKILL cannot happen (one write), but be safe
			}
			ns, _ := strconv.ParseInt(fs[4], 10, 64)
			pid, _ := strconv.Atoi(strings.Split(fs[3], ".")[0])
			out = append(out, ledgerLine{kind: fs[0], wf: fs[1], key: fs[2], exec: fs[3], pid: pid, at: time.Unix(0, ns)})
		}
	}
	return out, nil
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    | " + strings.Join(lines, "\n    | ")
}

func (d *driver) logTails() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	for _, p := range d.procs {
		fmt.Fprintf(&b, "worker %d (pid %d, %s):\n%s\n", p.n, p.pid, p.exec, tail(p.logPath, 10))
	}
	return b.String()
}
