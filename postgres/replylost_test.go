package postgres_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
)

// replyCutter is a TCP proxy in front of the server. Once armed, it drops
// the connection that carries the next reply to a COMMIT, before the
// client reads it: the server has committed, and the client never hears
// so.
type replyCutter struct {
	t       *testing.T
	network string // of the server
	addr    string
	armed   atomic.Bool
	cuts    atomic.Int32
	port    uint16 // the proxy's
}

func newReplyCutter(t *testing.T, host string, port uint16) *replyCutter {
	c := &replyCutter{t: t, network: "tcp", addr: net.JoinHostPort(host, strconv.Itoa(int(port)))}
	if strings.HasPrefix(host, "/") {
		c.network, c.addr = "unix", host+"/.s.PGSQL."+strconv.Itoa(int(port))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	c.port = uint16(ln.Addr().(*net.TCPAddr).Port)
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			go c.serve(client)
		}
	}()
	return c
}

// serve relays one connection. The server speaks first only in typed
// messages (a type byte, then a 4-byte length that counts itself), as the
// client asks for no TLS.
func (c *replyCutter) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial(c.network, c.addr)
	if err != nil {
		c.t.Errorf("proxy: dial the server: %v", err)
		return
	}
	defer server.Close()
	go func() {
		io.Copy(server, client) //nolint:errcheck // ends when either side closes
		server.Close()
	}()
	var head [5]byte
	for {
		if _, err := io.ReadFull(server, head[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(head[1:])-4)
		if _, err := io.ReadFull(server, body); err != nil {
			return
		}
		// CommandComplete with the tag COMMIT.
		if head[0] == 'C' && string(body) == "COMMIT\x00" && c.armed.CompareAndSwap(true, false) {
			c.cuts.Add(1)
			return
		}
		if _, err := client.Write(append(head[:], body...)); err != nil {
			return
		}
	}
}

// An append whose commit reached the server, but whose reply was lost,
// gives ErrUnknownOutcome; retrying it finds the events stored and stores
// nothing more.
func TestAppend_CommittedButReplyLost(t *testing.T) {
	ctx := context.Background()
	var cut *replyCutter
	s := openWithConfig(t, func(cfg *pgxpool.Config) {
		cut = newReplyCutter(t, cfg.ConnConfig.Host, cfg.ConnConfig.Port)
		cfg.ConnConfig.Host, cfg.ConnConfig.Port = "127.0.0.1", cut.port
		cfg.ConnConfig.TLSConfig, cfg.ConnConfig.Fallbacks = nil, nil
	})
	call := retryableCall()
	cut.armed.Store(true)
	_, err := s.Append(ctx, call...)
	require.EqualValues(t, 1, cut.cuts.Load(), "no COMMIT reply was cut")
	require.ErrorIs(t, err, eventstore.ErrUnknownOutcome)

	stored, err := eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Len(t, stored, 2, "the server committed the append")
	out, err := s.Append(ctx, call...)
	require.NoError(t, err, "retrying an append that committed")
	require.Equal(t, stored, out)
	all, err := eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Equal(t, stored, all, "the retry stored nothing more")
}
