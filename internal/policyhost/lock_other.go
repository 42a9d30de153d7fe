//go:build !unix

package policyhost

// lockFile is a no-op where flock is missing: there, run `serve records`
// only while the server is stopped or has already loaded the config.
func lockFile(string) (unlock func(), err error) { return func() {}, nil }
