package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/keyfocus/keyfocus/focus"
)

// Server serves a focus.Source on a listener (normally a unix socket made by
// Listen). Its zero value is not usable: set Source.
type Server struct {
	Source focus.Source
	Logger *slog.Logger // nil: slog.Default()
	// Buffer is how many events each connection may have in flight before it
	// is resynchronised (default 4096).
	Buffer int
	// WriteTimeout is how long a write to one console may take before that
	// console is dropped (default 5s).
	WriteTimeout time.Duration
	// ActionTimeout bounds one operator action (default 30s).
	ActionTimeout time.Duration
	// KeySeparator is the focus's room-key separator (default "="): room
	// names are logged with everything up to it masked, so a key in the
	// room-prefix form never reaches the log.
	KeySeparator string
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) buffer() int {
	if s.Buffer > 0 {
		return s.Buffer
	}
	return 4096
}

func (s *Server) writeTimeout() time.Duration {
	if s.WriteTimeout > 0 {
		return s.WriteTimeout
	}
	return 5 * time.Second
}

func (s *Server) actionTimeout() time.Duration {
	if s.ActionTimeout > 0 {
		return s.ActionTimeout
	}
	return 30 * time.Second
}

// Serve accepts consoles on ln until ctx ends, then closes ln and every
// connection and returns nil. Any other accept error is returned.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.Source == nil {
		return errors.New("control: Server.Source is nil")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("control socket: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
		}()
	}
}

// serveConn runs one console connection: a writer (state, events, replies)
// and a reader (requests).
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	log := s.logger().With("console", connID(c))
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		c.Close() // unblocks the reader
		wg.Wait()
	}()

	replies := make(chan message, 16)

	// Reader: requests; each action runs in its own goroutine, at most 4 at a
	// time. The reader and the actions are counted in wg.
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		sem := make(chan struct{}, 4)
		sc := bufio.NewScanner(c)
		sc.Buffer(make([]byte, 4096), maxRequestLine)
		for sc.Scan() {
			var req message
			if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
				log.Warn("control socket: malformed request, closing", "err", err)
				return
			}
			select {
			case sem <- struct{}{}:
			default:
				s.reply(ctx, replies, req.ID, errors.New("too many actions in flight, try again"))
				continue
			}
			wg.Add(1)
			go func(req message) {
				defer wg.Done()
				defer func() { <-sem }()
				s.reply(ctx, replies, req.ID, s.act(ctx, log, req))
			}(req)
		}
		if err := sc.Err(); err != nil && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
			log.Debug("control socket: read", "err", err)
		}
	}()

	// The writer stops when ctx ends: the reader cancels it when the console
	// hangs up, and Serve when it shuts down.
	if err := s.write(ctx, c, replies); err != nil && ctx.Err() == nil {
		log.Info("control socket: console dropped", "err", err)
	}
}

func (s *Server) reply(ctx context.Context, replies chan<- message, id uint64, err error) {
	m := message{Type: TypeReply, ID: id}
	if err != nil {
		m.Error = err.Error()
	}
	select {
	case replies <- m:
	case <-ctx.Done():
	}
}

func (s *Server) act(ctx context.Context, log *slog.Logger, req message) error {
	ctx, cancel := context.WithTimeout(ctx, s.actionTimeout())
	defer cancel()
	switch req.Type {
	case TypeRemoveMember:
		if err := checkRoom(req.Room); err != nil {
			return err
		}
		if strings.TrimSpace(req.Nick) == "" || strings.IndexFunc(req.Nick, unicode.IsControl) >= 0 {
			return errors.New("remove_member needs the member's nick")
		}
		log.Info("operator action: remove member", "room", s.maskRoom(req.Room), "nick", req.Nick)
		return s.Source.RemoveMember(ctx, req.Room, req.Nick, req.Reason)
	case TypeEndRoom:
		if err := checkRoom(req.Room); err != nil {
			return err
		}
		log.Info("operator action: end room", "room", s.maskRoom(req.Room))
		return s.Source.EndRoom(ctx, req.Room, req.Reason)
	default:
		return fmt.Errorf("unknown request type %q", req.Type)
	}
}

// write sends the state, then events and replies, until ctx ends or a write
// fails. Writes are buffered and flushed whenever nothing more is pending, each
// under the write timeout.
func (s *Server) write(ctx context.Context, c net.Conn, replies <-chan message) error {
	bw := bufio.NewWriterSize(c, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	timeout := s.writeTimeout()
	send := func(m *message) error {
		c.SetWriteDeadline(time.Now().Add(timeout))
		return enc.Encode(m)
	}
	flush := func() error {
		c.SetWriteDeadline(time.Now().Add(timeout))
		return bw.Flush()
	}

	st, sub := s.Source.Watch(s.buffer())
	defer func() { sub.Close() }()
	absStore(&st.Store)
	if err := send(&message{Type: TypeState, Proto: Proto, State: &st}); err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-replies:
			if err := send(&m); err != nil {
				return err
			}
		case ev, ok := <-sub.C:
			if !ok {
				return errors.New("source closed the subscription")
			}
			if sub.Dropped() > 0 {
				// This console fell behind: drop what is buffered, start again
				// from a fresh state.
				sub.Close()
				st, sub = s.Source.Watch(s.buffer())
				absStore(&st.Store)
				if err := send(&message{Type: TypeState, Proto: Proto, Resync: true, State: &st}); err != nil {
					return err
				}
				break
			}
			if ev.Store != nil {
				store := *ev.Store
				absStore(&store)
				ev.Store = &store
			}
			if err := send(&message{Type: TypeEvent, Event: &ev}); err != nil {
				return err
			}
		}
		if len(sub.C) == 0 && len(replies) == 0 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// maskRoom hides a key in the room-prefix form (KEY<sep>NAME@muc).
func (s *Server) maskRoom(room string) string {
	sep := s.KeySeparator
	if sep == "" {
		sep = "="
	}
	local, domain, _ := strings.Cut(room, "@")
	if i := strings.LastIndex(local, sep); i > 0 {
		local = "•••" + local[i:]
	}
	if domain == "" {
		return local
	}
	return local + "@" + domain
}

// checkRoom accepts a bare room JID (local@domain): no resource, no spaces
// or control characters, which no room JID has. A room in the room-prefix
// form is named as the focus shows it in its State and events, its key
// replaced by "[key FINGERPRINT]" (focus.Focus.RemoveMember accepts that).
func checkRoom(room string) error {
	local, domain, ok := strings.Cut(room, "@")
	if rest, masked := strings.CutPrefix(local, "[key "); masked {
		fp, after, closed := strings.Cut(rest, "]")
		if closed && len(fp) == 8 && strings.Trim(fp, "0123456789abcdef") == "" && after != "" {
			local = "k" + after // the fingerprint, then the separator and the name
		}
	}
	if !ok || local == "" || domain == "" || strings.Contains(room, "/") ||
		strings.IndexFunc(local+"@"+domain, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("%q is not a room: want the bare room JID, e.g. standup@conference.meet.example", room)
	}
	return nil
}

// absStore makes the key file path absolute: the console that attaches runs
// in another folder, and opens the same file.
func absStore(st *focus.StoreState) {
	if st.Path != "" && !filepath.IsAbs(st.Path) {
		if p, err := filepath.Abs(st.Path); err == nil {
			st.Path = p
		}
	}
}

func connID(c net.Conn) string {
	if uc, ok := c.(*net.UnixConn); ok {
		if raw, err := uc.SyscallConn(); err == nil {
			var cred *syscall.Ucred
			raw.Control(func(fd uintptr) {
				cred, _ = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
			})
			if cred != nil {
				return fmt.Sprintf("pid %d uid %d", cred.Pid, cred.Uid)
			}
		}
	}
	return c.RemoteAddr().String()
}

// ListenConfig says how to create the control socket.
type ListenConfig struct {
	// Group, if set, is the name (or numeric id) of a group whose members may
	// also connect: the socket is then 0660 and owned by that group.
	// Otherwise it is 0600.
	Group string
}

// Listen creates the unix control socket at path, 0600 (or 0660 with
// cfg.Group). A stale socket left by a focus that died is replaced; a socket
// that a running focus still serves is an error. The socket file is removed
// when the listener is closed.
func Listen(path string, cfg ListenConfig) (net.Listener, error) {
	gid := -1
	if cfg.Group != "" {
		g, err := user.LookupGroup(cfg.Group)
		if err != nil {
			g, err = user.LookupGroupId(cfg.Group)
		}
		if err != nil {
			return nil, fmt.Errorf("control socket: unknown group %q: create it or name an existing one", cfg.Group)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket: %s exists and is not a socket: remove it or choose another --socket path", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket: %s is in use by a running keyfocus: stop it or choose another --socket path", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket: removing stale %s: %w", path, err)
		}
	}
	// The socket is made in a private (0700) folder beside path, given its
	// mode there, and only then renamed into place: bound at path directly it
	// would exist with the umask's mode until the chmod, and a console that
	// connected in that moment would stay connected.
	dir, err := os.MkdirTemp(filepath.Dir(path), ".kf")
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	mode := os.FileMode(0o600)
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("control socket: giving %s to group %s: %w", path, cfg.Group, err)
		}
		mode = 0o660
	}
	if err := os.Chmod(tmp, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &unixListener{UnixListener: ln, path: path, file: fi}, nil
}

// unixListener removes its socket file when closed.
type unixListener struct {
	*net.UnixListener
	path string
	file os.FileInfo // the socket file as Listen made it
	once sync.Once
}

// Close removes the socket file, if it is still this listener's, and then
// closes the listener. In that order: once Close has returned, a new
// listener may be made at the same path at once, and this one must not
// remove it.
func (l *unixListener) Close() error {
	l.once.Do(func() {
		if fi, err := os.Lstat(l.path); err == nil && os.SameFile(fi, l.file) {
			os.Remove(l.path)
		}
	})
	return l.UnixListener.Close()
}
