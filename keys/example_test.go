package keys_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/keyfocus/keyfocus/keys"
)

func Example() {
	dir, _ := os.MkdirTemp("", "keys-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "keys.properties")
	os.WriteFile(path, []byte("# seed keys\nadmin123=TTND\n"), 0o600)

	store, err := keys.OpenWith(path, keys.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Add a key for a client: the key is shown once, the file keeps its hash.
	key, entry, err := store.Add(keys.Spec{Name: "Acme Corp", Rooms: []string{"acme-*"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(entry.Name, entry.Hashed, entry.Line)

	// What the focus asks for each conference request.
	snap := store.Snapshot()
	_, v := snap.Authorize(key, "acme-standup", time.Now(), false)
	fmt.Println(v)
	_, v = snap.Authorize(key, "board", time.Now(), false)
	fmt.Println(v)
	e, v := snap.Authorize("ADMIN123", "any", time.Now(), true) // room-name form: case-insensitive
	fmt.Println(e.Name, v)
	// Output:
	// Acme Corp true 3
	// valid
	// room not allowed
	// TTND valid
}
