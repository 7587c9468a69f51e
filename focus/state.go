package focus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// EvStateFailed: the state file could not be read or written (Reason set).
// Added to the event contract by the focus.
const EvStateFailed EventKind = "state_failed"

// stateFile is the on-disk form of the admissions (--state).
type stateFile struct {
	Version int         `json:"version"`
	Saved   time.Time   `json:"saved"`
	Rooms   []stateRoom `json:"rooms"`
	// Ended lists rooms that ended with removals Prosody had not confirmed
	// (Room and Removing set): sent again on the next connect.
	Ended []stateRoom `json:"ended,omitempty"`
}

type stateRoom struct {
	Room       string       `json:"room"`            // the room JID, sealed if it holds a key (seal.go)
	Shown      string       `json:"shown,omitempty"` // how logs show a sealed room`
	Created    time.Time    `json:"created"`
	Admissions []*admission `json:"admissions"`
	// Removing lists the bare JIDs whose removal Prosody had not confirmed
	// yet: after a restart, resync sends it again if Prosody still lists
	// them as members (see room.noteRevoked).
	Removing []string `json:"removing,omitempty"`
	// Destroy, in Ended only, is the reason of a destroy Prosody had not
	// answered: sent again on the next connect.
	Destroy string `json:"destroy,omitempty"`
}

const stateVersion = 1

func (f *Focus) markDirty() {
	if f.cfg.StatePath == "" {
		return
	}
	select {
	case f.dirty <- struct{}{}:
	default:
	}
}

// loadState reads the state file. A missing file is a first start; a corrupt
// one is reported (log and event) and the focus starts without it.
func (f *Focus) loadState() {
	if f.cfg.StatePath == "" {
		return
	}
	data, err := os.ReadFile(f.cfg.StatePath)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var st stateFile
	if err == nil {
		err = json.Unmarshal(data, &st)
		if err == nil && st.Version != stateVersion {
			err = fmt.Errorf("unknown version %d", st.Version)
		}
	}
	if err != nil {
		msg := fmt.Sprintf("state file %s is unreadable (%v): starting without it; people already in rooms stay, but keyfocus cannot tell which key admitted them until they ask again", f.cfg.StatePath, err)
		f.log.Error(msg)
		f.mu.Lock()
		f.rederive = true
		f.publishLocked(Event{Kind: EvStateFailed, Reason: msg})
		// Salvage what names the rooms: they are joined again and their
		// member lists read back from Prosody (see resync).
		for _, j := range salvageRooms(data, f.cfg.MUC) {
			if j, err = f.openRoom(j); err != nil {
				continue
			}
			if f.rooms[j] == nil {
				f.rooms[j] = newRoom(j, localOf(j), f.now())
			}
		}
		if n := len(f.rooms); n > 0 {
			f.log.Warn("state file: salvaged room names; their members are read back from Prosody", "rooms", n)
		}
		f.mu.Unlock()
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, sr := range st.Rooms {
		if sr.Room == "" {
			continue
		}
		j, err := f.openRoom(sr.Room)
		if err != nil {
			f.log.Error("state file: room skipped", "room", sr.Shown, "err", err)
			continue
		}
		r := newRoom(j, localOf(j), sr.Created)
		for _, a := range sr.Admissions {
			if a != nil && a.JID != "" {
				a.joined = true
				r.admitted[a.JID] = a
				n++
			}
		}
		for _, bare := range sr.Removing {
			if bare = strings.ToLower(bare); bare != "" && r.admitted[bare] == nil {
				r.noteRevoked(bare, f.now())
			}
		}
		f.rooms[r.jid] = r
	}
	for _, sr := range st.Ended {
		if sr.Room == "" {
			continue
		}
		j, err := f.openRoom(sr.Room)
		if err != nil {
			f.log.Error("state file: what was pending for an ended room is skipped", "room", sr.Shown, "err", err)
			continue
		}
		stub := &room{jid: j}
		for _, bare := range sr.Removing {
			if bare = strings.ToLower(bare); bare != "" {
				stub.noteRevoked(bare, f.now())
			}
		}
		f.keepEndedRemovalsLocked(stub)
		if sr.Destroy != "" && f.rooms[j] == nil {
			f.noteDestroyLocked(j, sr.Destroy)
		}
	}
	f.log.Info("state loaded", "path", f.cfg.StatePath, "rooms", len(st.Rooms), "admissions", n)
}

// salvageRooms finds the room JIDs on the MUC host in a damaged state file:
// those of the "rooms" list, not of "ended" (which is written after it).
func salvageRooms(data []byte, muc string) []string {
	if i := bytes.Index(data, []byte(`"ended"`)); i >= 0 {
		data = data[:i]
	}
	re := regexp.MustCompile(`"room"\s*:\s*"([^"\\@/]+@` + regexp.QuoteMeta(muc) + `|` + sealedPrefix + `[A-Za-z0-9_-]+)"`)
	var out []string
	for _, m := range re.FindAllSubmatch(data, -1) {
		j := string(m[1])
		if !strings.HasPrefix(j, sealedPrefix) {
			j = strings.ToLower(j)
		}
		out = append(out, j)
	}
	return out
}

func localOf(roomJID string) string {
	for i := 0; i < len(roomJID); i++ {
		if roomJID[i] == '@' {
			return roomJID[:i]
		}
	}
	return roomJID
}

// saver writes the state file whenever it is marked dirty; marks that come
// while a write runs coalesce into one more write.
func (f *Focus) saver(ctx context.Context) {
	defer close(f.saved)
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.dirty:
			f.saveNow()
		}
	}
}

func (f *Focus) saveNow() {
	if f.cfg.StatePath == "" {
		return
	}
	f.mu.Lock()
	st := stateFile{Version: stateVersion, Saved: f.now()}
	for _, r := range f.rooms {
		sealed, err := f.sealRoom(r.jid)
		if err != nil {
			f.log.Error("state file: cannot seal a room name; room left out", "room", f.logRoom(r.jid), "err", err)
			continue
		}
		sr := stateRoom{Room: sealed, Created: r.created}
		if sealed != r.jid {
			sr.Shown = f.logRoom(r.jid)
		}
		for _, a := range r.admitted {
			cp := *a
			sr.Admissions = append(sr.Admissions, &cp)
		}
		sort.Slice(sr.Admissions, func(i, j int) bool { return sr.Admissions[i].JID < sr.Admissions[j].JID })
		for bare, t := range r.revoked {
			if t.IsZero() {
				sr.Removing = append(sr.Removing, bare)
			}
		}
		sort.Strings(sr.Removing)
		st.Rooms = append(st.Rooms, sr)
	}
	ended := make(map[string]bool)
	for jid := range f.endedRemovals {
		ended[jid] = true
	}
	for jid := range f.endedDestroys {
		ended[jid] = true
	}
	for jid := range ended {
		sealed, err := f.sealRoom(jid)
		if err != nil {
			f.log.Error("state file: cannot seal a room name; what is pending for it left out", "room", f.logRoom(jid), "err", err)
			continue
		}
		sr := stateRoom{Room: sealed, Destroy: f.endedDestroys[jid]}
		if sealed != jid {
			sr.Shown = f.logRoom(jid)
		}
		for bare := range f.endedRemovals[jid] {
			sr.Removing = append(sr.Removing, bare)
		}
		sort.Strings(sr.Removing)
		st.Ended = append(st.Ended, sr)
	}
	f.mu.Unlock()
	sort.Slice(st.Rooms, func(i, j int) bool { return st.Rooms[i].Room < st.Rooms[j].Room })
	sort.Slice(st.Ended, func(i, j int) bool { return st.Ended[i].Room < st.Ended[j].Room })
	data, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = writeAtomic(f.cfg.StatePath, append(data, '\n'))
	}
	if err != nil {
		msg := fmt.Sprintf("cannot write the state file %s: %v (admissions will not survive a restart until this is fixed)", f.cfg.StatePath, err)
		f.log.Error(msg)
		f.mu.Lock()
		f.publishLocked(Event{Kind: EvStateFailed, Reason: msg})
		f.mu.Unlock()
	}
}

// writeAtomic writes data to path via a temp file in the same folder: write,
// fsync, rename, fsync the folder.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
