package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/keyfocus/keyfocus/focus"
)

// ErrDisconnected is returned by actions attempted while the client has no
// connection to the focus (it keeps redialling in the background).
var ErrDisconnected = errors.New("not connected to the focus's control socket")

// Client is a focus.Source backed by a focus's control socket. It keeps its
// own copy of the focus state and redials when the connection drops.
//
// Subscriptions handed out by Watch are closed (their C is closed) whenever
// the client's picture of the focus starts over: after a reconnect, or when
// the server resynchronised a connection that fell behind. A console that
// sees C closed calls Watch again.
type Client struct {
	path string
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// wmu serialises requests on the connection; mu is never held across
	// network I/O, so a slow write never stalls the reading of events.
	wmu sync.Mutex

	mu      sync.Mutex
	conn    net.Conn
	enc     *json.Encoder
	mirror  *mirror
	bus     focus.Bus
	subs    []*focus.Subscription
	pending map[uint64]chan error
	nextID  uint64
}

// ClientOption configures Dial.
type ClientOption func(*Client)

// WithLogger sets the client's logger (default slog.Default()).
func WithLogger(l *slog.Logger) ClientOption { return func(c *Client) { c.log = l } }

var _ focus.Source = (*Client)(nil)

// Dial connects to the control socket at path and waits for the focus's
// state. The first connection must succeed; after that the client redials on
// its own until Close.
func Dial(ctx context.Context, path string, opts ...ClientOption) (*Client, error) {
	c := &Client{path: path, log: slog.Default(), pending: make(map[uint64]chan error), done: make(chan struct{})}
	for _, o := range opts {
		o(c)
	}
	conn, rd, st, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.install(conn, st)
	go c.run(conn, rd)
	return c, nil
}

// connect dials and reads the first state message.
func (c *Client) connect(ctx context.Context) (net.Conn, *bufio.Reader, focus.State, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return nil, nil, focus.State{}, fmt.Errorf("no keyfocus is serving the control socket %s (%v): start one with `keyfocus run --headless --socket %s`, or check the path and its permissions", c.path, err, c.path)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	rd := bufio.NewReaderSize(conn, 64<<10)
	m, err := readMessage(rd)
	if err == nil && (m.Type != TypeState || m.State == nil) {
		err = fmt.Errorf("expected a state message, got %q", m.Type)
	}
	if err == nil && m.Proto != Proto {
		err = fmt.Errorf("the focus speaks control protocol %d, this keyfocus speaks %d: use the same keyfocus version for both", m.Proto, Proto)
	}
	if err != nil {
		conn.Close()
		return nil, nil, focus.State{}, fmt.Errorf("control socket %s: %w", c.path, err)
	}
	conn.SetReadDeadline(time.Time{})
	return conn, rd, *m.State, nil
}

func readMessage(rd *bufio.Reader) (message, error) {
	var m message
	line, err := readLine(rd)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(line, &m); err != nil {
		return m, fmt.Errorf("malformed message: %w", err)
	}
	return m, nil
}

func readLine(rd *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, isPrefix, err := rd.ReadLine()
		if err != nil {
			return nil, err
		}
		if !isPrefix && buf == nil {
			return chunk, nil
		}
		buf = append(buf, chunk...)
		if len(buf) > maxClientLine {
			return nil, errors.New("message too long")
		}
		if !isPrefix {
			return buf, nil
		}
	}
}

// install makes st the client's picture of the focus over conn, and tells
// every subscriber to start over.
func (c *Client) install(conn net.Conn, st focus.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn = conn
	c.enc = json.NewEncoder(conn)
	c.mirror = newMirror(st)
	c.resetSubsLocked()
}

func (c *Client) resetSubsLocked() {
	for _, s := range c.subs {
		s.Close()
	}
	c.subs = c.subs[:0]
}

// run reads the connection until it fails, then redials until Close.
func (c *Client) run(conn net.Conn, rd *bufio.Reader) {
	defer close(c.done)
	attempt := 0
	for {
		err := c.read(rd)
		c.disconnected(conn)
		if c.ctx.Err() != nil {
			return
		}
		c.log.Warn("control socket: lost the focus, reconnecting", "socket", c.path, "err", err)
		backoff := 100 * time.Millisecond
		for {
			attempt++
			c.publishConn(focus.ConnState{Connected: false, Attempt: attempt, Since: time.Now(),
				LastError: fmt.Sprintf("control socket %s: %v", c.path, err)})
			t := time.NewTimer(backoff + rand.N(backoff/2))
			select {
			case <-c.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			var st focus.State
			conn, rd, st, err = c.connect(c.ctx)
			if err == nil {
				c.log.Info("control socket: reconnected", "socket", c.path, "attempts", attempt)
				attempt = 0
				c.install(conn, st)
				break
			}
			backoff = min(backoff*2, 5*time.Second)
		}
	}
}

func (c *Client) read(rd *bufio.Reader) error {
	for {
		m, err := readMessage(rd)
		if err != nil {
			return err
		}
		switch m.Type {
		case TypeEvent:
			if m.Event == nil {
				continue
			}
			c.mu.Lock()
			c.mirror.apply(*m.Event)
			c.bus.Publish(*m.Event)
			c.mu.Unlock()
		case TypeState:
			if m.State == nil {
				continue
			}
			c.mu.Lock()
			c.mirror = newMirror(*m.State)
			c.resetSubsLocked()
			c.mu.Unlock()
		case TypeReply:
			c.mu.Lock()
			ch := c.pending[m.ID]
			delete(c.pending, m.ID)
			c.mu.Unlock()
			if ch != nil {
				if m.Error != "" {
					ch <- errors.New(m.Error)
				} else {
					ch <- nil
				}
			}
		}
	}
}

// disconnected fails every action in flight on conn.
func (c *Client) disconnected(conn net.Conn) {
	conn.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == conn {
		c.conn, c.enc = nil, nil
	}
	for id, ch := range c.pending {
		ch <- ErrDisconnected
		delete(c.pending, id)
	}
}

func (c *Client) publishConn(cs focus.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mirror.conn = cs
	c.bus.Publish(focus.Event{Kind: focus.EvConnection, Time: cs.Since, Conn: &cs})
}

// Watch implements focus.Source.
func (c *Client) Watch(buffer int) (focus.State, *focus.Subscription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sub := c.bus.Subscribe(buffer)
	c.subs = append(c.subs, sub)
	return c.mirror.state(), sub
}

// RemoveMember implements focus.Source: the focus kicks the member.
func (c *Client) RemoveMember(ctx context.Context, room, nick, reason string) error {
	return c.do(ctx, message{Type: TypeRemoveMember, Room: room, Nick: nick, Reason: reason})
}

// EndRoom implements focus.Source: the focus destroys the room.
func (c *Client) EndRoom(ctx context.Context, room, reason string) error {
	return c.do(ctx, message{Type: TypeEndRoom, Room: room, Reason: reason})
}

func (c *Client) do(ctx context.Context, m message) error {
	ch := make(chan error, 1)
	c.mu.Lock()
	if c.enc == nil {
		c.mu.Unlock()
		return ErrDisconnected
	}
	c.nextID++
	m.ID = c.nextID
	c.pending[m.ID] = ch
	conn, enc := c.conn, c.enc
	c.mu.Unlock()
	c.wmu.Lock()
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	err := enc.Encode(&m)
	c.wmu.Unlock()
	if err != nil {
		c.mu.Lock()
		delete(c.pending, m.ID)
		c.mu.Unlock()
		return fmt.Errorf("control socket: sending %s: %w", m.Type, err)
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, m.ID)
		c.mu.Unlock()
		return ctx.Err()
	}
}

// Close disconnects and stops redialling. Subscriptions are closed.
func (c *Client) Close() error {
	c.cancel()
	c.mu.Lock()
	if c.conn != nil {
		c.conn.Close()
	}
	c.mu.Unlock()
	<-c.done
	c.mu.Lock()
	c.resetSubsLocked()
	c.mu.Unlock()
	return nil
}
