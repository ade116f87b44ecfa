// Package torture is dbosgen's fault-injection and load suite: TestTorture
// runs generated workflows (./worker) in several processes against one
// PostgreSQL database, started directly and through a queue, injects faults
// for a bounded time — SIGKILL of workers, workers killed for good (their
// executors' work adopted by the others), workers paused past their
// executor lease and continued (fenced), PostgreSQL restarts, terminated
// backends, connections cut and acknowledgements lost on the wire, two
// workers with one executor ID, a worker launched while another recovers —
// and then proves from the database and from a ledger of side effects kept
// outside it that nothing was lost, nothing that must run once ran twice,
// and no worker ran more queued workflows at once than the queue allows.
package torture

import (
	"bytes"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is a TCP proxy between the workers and PostgreSQL that injects
// network faults scoped to the workers' connections: an outage (all
// connections dropped, new ones refused), cut connections, and lost
// acknowledgements (a request reaches the server, its response never comes
// back, then the connection drops).
type Proxy struct {
	upstream string
	addr     string

	mu    sync.Mutex
	ln    net.Listener
	down  bool
	conns map[*proxyConn]struct{}

	Cuts, AckLossArmed, AckLossFired, CommitAckLossFired, Outages atomic.Int64
}

type proxyConn struct {
	client, server net.Conn
	armed          atomic.Int32 // 0 none, 1 any request, 2 a request containing COMMIT
	swallow        atomic.Bool
	once           sync.Once
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		c.client.Close()
		c.server.Close()
	})
}

// NewProxy listens on a free local port and forwards to upstream (host:port).
func NewProxy(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{upstream: upstream, addr: ln.Addr().String(), ln: ln, conns: map[*proxyConn]struct{}{}}
	go p.accept(ln)
	return p, nil
}

// Addr is host:port to connect to instead of the upstream.
func (p *Proxy) Addr() string { return p.addr }

func (p *Proxy) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed: outage or Close
		}
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	c := &proxyConn{client: client, server: server}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.close()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		c.close()
	}()
	go func() {
		defer c.close()
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				if _, werr := server.Write(buf[:n]); werr != nil {
					return
				}
				switch c.armed.Load() {
				case 1:
					p.fire(c, false)
				case 2:
					if bytes.Contains(bytes.ToLower(buf[:n]), []byte("commit")) {
						p.fire(c, true)
					}
				}
			}
			if err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 && !c.swallow.Load() {
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// fire makes the request just forwarded lose its response: the server
// processes it, the client hears nothing and then sees the connection drop.
func (p *Proxy) fire(c *proxyConn, commit bool) {
	if c.armed.Swap(0) == 0 {
		return
	}
	c.swallow.Store(true)
	p.AckLossFired.Add(1)
	if commit {
		p.CommitAckLossFired.Add(1)
	}
	time.AfterFunc(150*time.Millisecond, c.close)
}

func (p *Proxy) pick(n int) []*proxyConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	all := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		all = append(all, c)
	}
	rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	return all[:min(n, len(all))]
}

// Cut drops up to n random connections and returns how many.
func (p *Proxy) Cut(n int) int {
	cs := p.pick(n)
	for _, c := range cs {
		c.close()
	}
	p.Cuts.Add(int64(len(cs)))
	return len(cs)
}

// ArmAckLoss arms up to n random connections to lose the response to their
// next request (commitOnly: to their next request that contains COMMIT).
func (p *Proxy) ArmAckLoss(n int, commitOnly bool) int {
	mode := int32(1)
	if commitOnly {
		mode = 2
	}
	cs := p.pick(n)
	for _, c := range cs {
		c.armed.Store(mode)
	}
	p.AckLossArmed.Add(int64(len(cs)))
	return len(cs)
}

// Outage drops every connection and refuses new ones for d, as a server
// restart looks from the client.
func (p *Proxy) Outage(d time.Duration) error {
	p.mu.Lock()
	p.down = true
	p.ln.Close()
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	p.Outages.Add(1)
	time.Sleep(d)
	return p.up()
}

func (p *Proxy) up() error {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.ln, p.down = ln, false
	p.mu.Unlock()
	go p.accept(ln)
	return nil
}

// Close stops the proxy and drops every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.down = true
	p.ln.Close()
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}
