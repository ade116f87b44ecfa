package torture

import (
	"os"
	"path/filepath"
	"strings"
)

// queueConcurrency mirrors worker.QueueConcurrency, the queue's worker
// concurrency.
const queueConcurrency = 2

// queuedBodies is, for one worker process, the most executions of queued
// orders' bodies it ran at once, and the workflows running at that moment.
type queuedBodies struct {
	ledger  string
	most    int
	running []string
}

// queuedConcurrency reads each worker's ledger in order: a queued order's
// body writes QB when it begins and QE when it returns, in one process, so
// the lines between tell what ran at once. A SIGKILL ends them all with the
// file. Each line is one write under a lock, so the order of the lines is
// the order of the events.
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
			default:
				continue
			}
			if n > q.most {
				q.most = n
				q.running = q.running[:0]
				for id, k := range open {
					for ; k > 0; k-- {
						q.running = append(q.running, id)
					}
				}
			}
		}
		out = append(out, q)
	}
	return out, nil
}
