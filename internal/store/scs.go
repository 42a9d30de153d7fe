package store

import (
	"context"
	"time"
)

// SCSStore adapts Sessions to the session store interfaces of
// github.com/alexedwards/scs/v2 (Store and CtxStore). UserOf tells which
// account a session belongs to from the encoded session data (decode it
// with the SessionManager's Codec and read the key the login handler Puts;
// the SessionManager's own getters cannot be used there, scs holds the
// session's lock while it commits); nil or 0 means none. The tie lets "log
// out everywhere" and account deletion end the account's sessions.
type SCSStore struct {
	Sessions Sessions
	UserOf   func(data []byte) UserID
}

// FindCtx implements scs.CtxStore.
func (s SCSStore) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	return s.Sessions.FindSession(ctx, token)
}

// CommitCtx implements scs.CtxStore.
func (s SCSStore) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	var u UserID
	if s.UserOf != nil {
		u = s.UserOf(b)
	}
	return s.Sessions.CommitSession(ctx, token, u, b, expiry)
}

// DeleteCtx implements scs.CtxStore.
func (s SCSStore) DeleteCtx(ctx context.Context, token string) error {
	return s.Sessions.DeleteSession(ctx, token)
}

// Find implements scs.Store; scs calls the Ctx methods when they exist.
func (s SCSStore) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

// Commit implements scs.Store.
func (s SCSStore) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

// Delete implements scs.Store.
func (s SCSStore) Delete(token string) error {
	return s.DeleteCtx(context.Background(), token)
}
