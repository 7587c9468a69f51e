//go:build !unix

package keys

// lockDir is a no-op where flock is not available: edits rely on the
// conflict check alone.
func lockDir(string) (unlock func()) { return func() {} }
