package focus

// SetSecret replaces the component secret (SIGHUP re-reads the secret file).
// The connection in place is kept; the new secret applies at the next
// (re)connect. An empty secret is ignored.
func (f *Focus) SetSecret(secret string) {
	if secret == "" {
		return
	}
	f.secret.Store(&secret)
}

// currentSecret is the secret to dial with: the last SetSecret, else Config's.
func (f *Focus) currentSecret() string {
	if s := f.secret.Load(); s != nil {
		return *s
	}
	return f.cfg.Secret
}
