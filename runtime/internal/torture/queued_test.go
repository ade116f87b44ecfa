package torture

import (
	"os"
	"path/filepath"
	"strings"
)

// queueConcurrency mirrors worker.QueueConcurrency, the queue's worker
// concurrency.
const queueConcurrency = 2

// queuedBodies is what one worker process ran of queued orders' bodies: the
// most at once, and the times more than the worker concurrency ran at once,
// split by whether recovered workflows explain it.
type queuedBodies struct {
	ledger      string
	most        int
	overAdopted int      // moments over the limit explained by recovered (adopted) workflows
	overOther   []string // the others: the workflows running at each
}

// queuedConcurrency reads each worker's ledger in order: a queued order's
// body writes QB when it begins and QE when it returns, in one process, so
// the lines between tell what ran at once. A SIGKILL ends them all with the
// file. Each line is one write under a lock, so the order of the lines is
// the order of the events.
//
// The runtime resumes an adopted executor's dequeued workflows at once,
// beside the adopter's own: over the limit, by as many bodies as it took
// over; a restart of the adopter's executor recovers them all at once again
// (see the report's note). An excess that recovered workflows do not make up
// is a violation: a dequeue beyond the limit.
func queuedConcurrency(dir string) ([]queuedBodies, error) {
	files, err := filepath.Glob(filepath.Join(dir, "ledger-*.log"))
	if err != nil {
		return nil, err
	}
	var out []queuedBodies
	for _, fn := range files {
		b, err := os.ReadFile(fn)
		if err != nil {
			return nil, err
		}
		adopted := recoveredIDs(strings.Replace(fn, "ledger-", "worker-", 1))
		q := queuedBodies{ledger: filepath.Base(fn)}
		open := map[string]int{}
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) != 5 {
				continue
			}
			switch fs[0] {
			case "QB":
				open[fs[1]]++
				n++
			case "QE":
				if open[fs[1]] > 0 {
					open[fs[1]]--
					n--
				}
				continue
			default:
				continue
			}
			q.most = max(q.most, n)
			if n <= queueConcurrency {
				continue
			}
			var running []string
			fromAdoption := 0
			for id, k := range open {
				for ; k > 0; k-- {
					running = append(running, id)
					if adopted[id] {
						fromAdoption++
					}
				}
			}
			if n-fromAdoption <= queueConcurrency {
				q.overAdopted++
			} else {
				q.overOther = append(q.overOther, strings.Join(running, " "))
			}
		}
		out = append(out, q)
	}
	return out, nil
}

// recoveredIDs are the workflows a worker resumed rather than dequeued or
// started: at Launch, after adopting another executor's, or when it held
// its lease again; its log names each in a "recovering workflow" line.
func recoveredIDs(logPath string) map[string]bool {
	b, _ := os.ReadFile(logPath)
	ids := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, `msg="recovering workflow"`) {
			continue
		}
		if _, rest, ok := strings.Cut(line, "workflow_id="); ok {
			ids[strings.Fields(rest)[0]] = true
		}
	}
	return ids
}
