package replicate_test

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventstore-go/eventstore/bolt"
	"github.com/eventstore-go/eventstore/postgres"
	"github.com/eventstore-go/eventstore/replicate"
)

// proxy forwards TCP connections to a server until it is frozen: then it
// stops passing bytes either way, as a cut network does, without closing
// anything.
type proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.heal() })
	go p.serve()
	return p
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *proxy) pipe(from, to net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		for p.isFrozen() {
			time.Sleep(5 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				to.Close()
			}
			return
		}
	}
}

func (p *proxy) isFrozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

func (p *proxy) freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

// heal ends the cut: the connections that lived through it are reset (as
// after a long partition, both ends give up on them) and new ones pass.
func (p *proxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.frozen = false
}

// TestCopy_NetworkCut cuts the network to PostgreSQL in the middle of a
// copy: Copy fails with ctx's deadline soon after it passes, and a later
// Copy resumes and completes.
func TestCopy_NetworkCut(t *testing.T) {
	schema := freshSchema(t)
	cfg, err := pgxpool.ParseConfig(testDSN())
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	cfg.ConnConfig.Host = "127.0.0.1"
	cfg.ConnConfig.Port = uint16(p.ln.Addr().(*net.TCPAddr).Port)
	// pgx's default: a ctx that ends sets a deadline on the connection at
	// once (Open's pool waits up to 5s for the server to cancel first).
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	dst, err := postgres.New(context.Background(), pool, &postgres.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.Close() })

	src, err := bolt.Open(filepath.Join(t.TempDir(), "src.db"), &bolt.Options{UnsafeNoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	fill(t, src, []string{"a", "b", "c", "d"}, 500) // 2,000 events

	const deadline = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	batches := 0
	opts := &replicate.Options{Checkpoint: "from:src", BatchSize: 100, Progress: func(replicate.Progress) {
		if batches++; batches == 3 {
			p.freeze()
		}
	}}
	begin := time.Now()
	stats, err := replicate.Copy(ctx, src, dst, opts)
	took := time.Since(begin)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Copy through a cut network: %v, want an error matching context.DeadlineExceeded", err)
	}
	t.Logf("cut after %d events: %v after %v", stats.Copied, err, took)
	if took > deadline+time.Second {
		t.Errorf("Copy returned %v after it began, its deadline was %v", took, deadline)
	}
	if stats.Copied < 200 || stats.Copied >= 2000 {
		t.Errorf("copied %d events before the cut, want 200 to 1999", stats.Copied)
	}

	p.heal()
	stats, err = replicate.Copy(context.Background(), src, dst, &replicate.Options{Checkpoint: "from:src", BatchSize: 100})
	if err != nil {
		t.Fatalf("Copy after the network came back: %v", err)
	}
	t.Logf("resumed: copied %d, skipped %d", stats.Copied, stats.Skipped)
	requireCopied(t, src, dst, nil, nil)
	head, err := dst.Head(context.Background())
	if err != nil || head != 2000 {
		t.Fatalf("dst head %d, %v", head, err)
	}
}
