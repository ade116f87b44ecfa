package engine

import (
	"os"
	"strconv"
	"strings"
	"sync"
)

// This file says who a process is, for executor leases: its host, its
// machine (kernel boot and PID namespace), and whether a process it finds
// in a lease row still exists.

// maxDefaultSlots bounds how many processes of one host share the default
// executor ID base (base, base-2, … base-64).
const maxDefaultSlots = 64

// defaultExecutorBase is the default executor ID: the host name, which is
// stable across restarts and distinct across machines (containers and pods
// each have their own); "local" when the host has none.
func defaultExecutorBase() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "local"
	}
	return h
}

// defaultExecutorSlot is the i-th (from 0) candidate for a default
// executor ID: base, then base-2, base-3, … for further processes on a host.
func defaultExecutorSlot(base string, i int) string {
	if i == 0 {
		return base
	}
	return base + "-" + strconv.Itoa(i+1)
}

var machine = sync.OnceValue(func() string {
	// A pid means the same process only within one kernel boot and one PID
	// namespace: both must match before a pid is looked up. Unknown (not
	// Linux): "", and no holder is ever proved gone by its pid.
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(boot)) + "/" + ns
})

// processGone reports whether pid provably names no running process on this
// machine: none exists, or only its zombie (killed, not yet reaped).
func processGone(pid int64) bool {
	if pid <= 0 || machine() == "" {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.FormatInt(pid, 10) + "/stat")
	if err != nil {
		return os.IsNotExist(err)
	}
	// The state follows the command name in parentheses, which may itself
	// hold parentheses: look after the last one.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}
