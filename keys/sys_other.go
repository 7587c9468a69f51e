//go:build !unix

package keys

import "os"

// lockDir is a no-op where flock is not available: edits rely on the
// conflict check alone.
func lockDir(string) (unlock func()) { return func() {} }

// keepOwner is a no-op where files have no Unix owner.
func keepOwner(*os.File, os.FileInfo) {}
