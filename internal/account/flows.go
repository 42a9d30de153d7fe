package account

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	mailer "github.com/mailtls/mailtls/internal/mail"
	"github.com/mailtls/mailtls/internal/store"
)

// SignUp registers an address with a password. invite is the token of an
// invitation link (needed in Invite mode; its address is then the one
// used and email is ignored). The answer is the same whether the address
// has an account or not: the password is always hashed here, and the
// account is created — or its owner told that someone tried to sign up
// again — in the background, by mail. Errors: ErrRegistrationClosed,
// ErrInviteRequired, ErrInvalidEmail, *PasswordError, *LimitError,
// ErrLink… for a bad invitation, ErrBusy.
func (s *Service) SignUp(ctx context.Context, client, email, pw, invite string) error {
	switch {
	case s.reg == Closed:
		return ErrRegistrationClosed
	case s.reg == Invite && invite == "":
		return ErrInviteRequired
	}
	if s.reg != Invite {
		var err error
		if email, err = CheckEmail(email); err != nil {
			return err
		}
	}
	if err := CheckPassword(pw, email); err != nil {
		return err
	}
	if d := s.lim.signupClient.check(client); d > 0 {
		return &LimitError{What: "sign-up", RetryAfter: d}
	}
	phc, err := s.hasher.Hash(ctx, pw)
	if err != nil {
		return err
	}
	if s.reg == Invite {
		t, err := s.consume(ctx, store.PurposeInvite, invite)
		if err != nil {
			return err
		}
		email = t.Email
	}
	s.lim.signupClient.take(client)
	return s.enqueue("sign-up", func(ctx context.Context) error {
		u, err := s.st.CreateUser(ctx, email, phc)
		if errors.Is(err, store.ErrConflict) {
			return s.sendExisting(ctx, email)
		}
		if err != nil {
			return fmt.Errorf("creating the account: %w", err)
		}
		return s.sendVerification(ctx, u)
	})
}

// sendVerification mails a new verification link to the user.
func (s *Service) sendVerification(ctx context.Context, u store.User) error {
	tok, hash, err := s.newSecret()
	if err != nil {
		return err
	}
	if err := s.st.CreateOneTimeToken(ctx, store.PurposeVerifyEmail, hash, u.ID, u.Email, VerifyTTL); err != nil {
		return fmt.Errorf("storing the verification link: %w", err)
	}
	return s.send(ctx, u.Email, "Confirm your e-mail address for mailtls", fmt.Sprintf(`Hello,

someone (we hope you) signed up for mailtls at %s with this address.
Open this link to confirm the address and finish signing up:

%s

The link works once, for %s. If you did not sign up, ignore this mail:
no account is usable without this confirmation.
`, s.base, s.link("/verify", tok), hours(VerifyTTL)))
}

// sendExisting tells the owner of an account that someone signed up with
// the address again (the page said "check your mail" either way).
func (s *Service) sendExisting(ctx context.Context, email string) error {
	return s.send(ctx, email, "You already have a mailtls account", fmt.Sprintf(`Hello,

someone tried to sign up for mailtls at %s with this address, which already
has an account. If it was you, log in at

%s

or, if you forgot your password, ask for a new one at

%s

If it was not you, ignore this mail: nothing was changed.
`, s.base, s.base+"/login", s.base+"/reset"))
}

// send mails text to one address, unless the address had too many mails
// lately (then it is skipped: the forms cannot flood a mailbox).
func (s *Service) send(ctx context.Context, to, subject, text string) error {
	if d := s.lim.mail.take(to); d > 0 {
		s.log.Info("account: a mail was not sent: too many to one address lately", "retry_in", d.Round(time.Second).String())
		return nil
	}
	return s.mail.Send(ctx, &mailer.Message{To: to, Subject: subject, Text: text})
}

func (s *Service) link(path, token string) string {
	return s.base + path + "?token=" + url.QueryEscape(token)
}

func hours(d time.Duration) string {
	if d%(24*time.Hour) == 0 && d >= 48*time.Hour {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	if d == time.Hour {
		return "one hour"
	}
	return fmt.Sprintf("%d hours", d/time.Hour)
}

// Verify uses a verification link: the address is verified. Errors:
// ErrLinkUnknown, ErrLinkExpired, ErrLinkUsed.
func (s *Service) Verify(ctx context.Context, token string) (store.User, error) {
	t, err := s.consume(ctx, store.PurposeVerifyEmail, token)
	if err != nil {
		return store.User{}, err
	}
	if err := s.st.MarkEmailVerified(ctx, t.UserID); err != nil {
		return store.User{}, linkError(err)
	}
	return s.st.GetUser(ctx, t.UserID)
}

// Login checks an address and password. A hash with old parameters is
// replaced by one with the current ones (RFC 9106 §4: parameters are
// raised over time). Errors: ErrInvalidEmail, ErrBadLogin (unknown
// address or wrong password: the same error, the same work),
// ErrNotVerified (a new link is mailed), ErrDisabled, *LimitError.
func (s *Service) Login(ctx context.Context, client, email, pw string) (store.User, error) {
	email = store.NormalizeEmail(email)
	if email == "" || len(email) > MaxEmailLen {
		return store.User{}, ErrBadLogin
	}
	if d := s.lim.loginClient.take(client); d > 0 {
		return store.User{}, &LimitError{What: "login", RetryAfter: d}
	}
	if d := s.lim.loginAccount.check(email); d > 0 {
		return store.User{}, &LimitError{What: "login", RetryAfter: d}
	}
	u, ok, err := s.checkPassword(ctx, email, pw)
	if err != nil {
		return store.User{}, err
	}
	if !ok {
		s.lim.loginAccount.take(email)
		return store.User{}, ErrBadLogin
	}
	if !u.DisabledAt.IsZero() {
		return store.User{}, ErrDisabled
	}
	if u.EmailVerifiedAt.IsZero() {
		if err := s.enqueue("verification again", func(ctx context.Context) error { return s.sendVerification(ctx, u) }); err != nil {
			return store.User{}, err
		}
		return store.User{}, ErrNotVerified
	}
	if err := s.st.RecordLogin(ctx, u.ID); err != nil {
		return store.User{}, err
	}
	return u, nil
}

// checkPassword looks the address up and checks the password, rehashing
// it when its parameters are old. An unknown address costs a dummy hash.
func (s *Service) checkPassword(ctx context.Context, email, pw string) (store.User, bool, error) {
	u, err := s.st.GetUserByEmail(ctx, email)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, false, s.hasher.Dummy(ctx, pw)
	}
	if err != nil {
		return store.User{}, false, err
	}
	ok, rehash, err := s.hasher.Verify(ctx, u.PasswordPHC, pw)
	if err != nil || !ok {
		return u, false, err
	}
	if rehash {
		if phc, err := s.hasher.Hash(ctx, pw); err == nil {
			if err := s.st.SetPassword(ctx, u.ID, phc); err != nil {
				return u, false, err
			}
			u.PasswordPHC = phc
		}
	}
	return u, true, nil
}

// CheckUserPassword checks the password of a logged-in user (before a
// password change or a deletion); failures count towards the account's
// login limit. Errors: ErrBadLogin, *LimitError.
func (s *Service) CheckUserPassword(ctx context.Context, id store.UserID, pw string) (store.User, error) {
	u, err := s.st.GetUser(ctx, id)
	if err != nil {
		return store.User{}, err
	}
	if d := s.lim.loginAccount.check(u.Email); d > 0 {
		return store.User{}, &LimitError{What: "password", RetryAfter: d}
	}
	ok, _, err := s.hasher.Verify(ctx, u.PasswordPHC, pw)
	if err != nil {
		return store.User{}, err
	}
	if !ok {
		s.lim.loginAccount.take(u.Email)
		return store.User{}, ErrBadLogin
	}
	return u, nil
}

// RequestReset asks for a password reset link for an address. The answer
// never depends on the address: the lookup, the link and the mail happen
// in the background. Errors: *LimitError (per client), ErrBusy.
func (s *Service) RequestReset(ctx context.Context, client, email string) error {
	if d := s.lim.resetClient.take(client); d > 0 {
		return &LimitError{What: "reset", RetryAfter: d}
	}
	email, err := CheckEmail(email)
	if err != nil {
		return err
	}
	return s.enqueue("reset request", func(ctx context.Context) error {
		u, err := s.st.GetUserByEmail(ctx, email)
		if errors.Is(err, store.ErrNotFound) {
			return nil // nothing to send; the page said the same
		}
		if err != nil {
			return err
		}
		if !u.DisabledAt.IsZero() {
			return nil
		}
		tok, hash, err := s.newSecret()
		if err != nil {
			return err
		}
		if err := s.st.CreateOneTimeToken(ctx, store.PurposeResetPassword, hash, u.ID, u.Email, ResetTTL); err != nil {
			return fmt.Errorf("storing the reset link: %w", err)
		}
		return s.send(ctx, u.Email, "Reset your mailtls password", fmt.Sprintf(`Hello,

someone (we hope you) asked to reset the password of your mailtls account at
%s. Open this link to choose a new password:

%s

The link works once, for one hour. If you did not ask for it, ignore this
mail: your password stays as it is.
`, s.base, s.link("/reset/confirm", tok)))
	})
}

// Reset sets a new password with a reset link. The link works once, for
// ResetTTL; using it also verifies the address (the mail reached it). The
// caller ends the user's sessions. Errors: *PasswordError, ErrLink….
func (s *Service) Reset(ctx context.Context, token, pw string) (store.User, error) {
	if err := CheckPassword(pw, ""); err != nil {
		return store.User{}, err
	}
	phc, err := s.hasher.Hash(ctx, pw)
	if err != nil {
		return store.User{}, err
	}
	t, err := s.consume(ctx, store.PurposeResetPassword, token)
	if err != nil {
		return store.User{}, err
	}
	u, err := s.st.GetUser(ctx, t.UserID)
	if err != nil {
		return store.User{}, linkError(err)
	}
	if err := s.setPassword(ctx, u, phc); err != nil {
		return store.User{}, err
	}
	if u.EmailVerifiedAt.IsZero() {
		if err := s.st.MarkEmailVerified(ctx, u.ID); err != nil {
			return store.User{}, err
		}
	}
	return u, nil
}

// ChangePassword replaces the password of a logged-in user after checking
// the current one. The caller renews the session and ends the others.
// Errors: ErrBadLogin (current password wrong), *PasswordError,
// *LimitError.
func (s *Service) ChangePassword(ctx context.Context, id store.UserID, current, next string) error {
	u, err := s.CheckUserPassword(ctx, id, current)
	if err != nil {
		return err
	}
	if err := CheckPassword(next, u.Email); err != nil {
		return err
	}
	phc, err := s.hasher.Hash(ctx, next)
	if err != nil {
		return err
	}
	return s.setPassword(ctx, u, phc)
}

// setPassword stores a new hash, voids outstanding reset links and tells
// the owner by mail.
func (s *Service) setPassword(ctx context.Context, u store.User, phc string) error {
	if err := s.st.SetPassword(ctx, u.ID, phc); err != nil {
		return err
	}
	if err := s.st.DeleteOneTimeTokens(ctx, u.ID, store.PurposeResetPassword); err != nil {
		return err
	}
	// A notice, so that a password changed by someone else is noticed;
	// ErrBusy only loses the notice.
	// Not counted against the address's mail limit: only the holder of the
	// password or of a reset link causes it.
	_ = s.enqueue("password notice", func(ctx context.Context) error {
		return s.mail.Send(ctx, &mailer.Message{To: u.Email, Subject: "Your mailtls password was changed", Text: fmt.Sprintf(`Hello,

the password of your mailtls account at %s was changed, and every other
session was logged out. If it was not you, ask for a new password at once:

%s
`, s.base, s.base+"/reset")})
	})
	return nil
}

// DeleteAccount deletes the account and everything it owns after checking
// its password. Errors: ErrBadLogin, *LimitError.
func (s *Service) DeleteAccount(ctx context.Context, id store.UserID, pw string) error {
	if _, err := s.CheckUserPassword(ctx, id, pw); err != nil {
		return err
	}
	return s.st.DeleteUser(ctx, id)
}

// AddUser creates a verified account from the shell (`mailtls user add`):
// the administrator vouches for the address. Errors: ErrInvalidEmail,
// *PasswordError, store.ErrConflict.
func (s *Service) AddUser(ctx context.Context, email, pw string) (store.User, error) {
	email, err := CheckEmail(email)
	if err != nil {
		return store.User{}, err
	}
	if err := CheckPassword(pw, email); err != nil {
		return store.User{}, err
	}
	phc, err := s.hasher.Hash(ctx, pw)
	if err != nil {
		return store.User{}, err
	}
	u, err := s.st.CreateUser(ctx, email, phc)
	if err != nil {
		return store.User{}, err
	}
	if err := s.st.MarkEmailVerified(ctx, u.ID); err != nil {
		return store.User{}, err
	}
	return s.st.GetUser(ctx, u.ID)
}

// InviteLink makes an invitation link for an address (`mailtls user
// invite`), valid for InviteTTL and once.
func (s *Service) InviteLink(ctx context.Context, email string) (string, error) {
	email, err := CheckEmail(email)
	if err != nil {
		return "", err
	}
	tok, hash, err := s.newSecret()
	if err != nil {
		return "", err
	}
	if err := s.st.CreateOneTimeToken(ctx, store.PurposeInvite, hash, 0, email, InviteTTL); err != nil {
		return "", err
	}
	return s.base + "/signup?invite=" + url.QueryEscape(tok), nil
}

// SetDisabled disables or enables an account (`mailtls user disable`);
// disabling ends its sessions, and its API tokens stop working.
func (s *Service) SetDisabled(ctx context.Context, email string, disabled bool) (store.User, error) {
	u, err := s.st.GetUserByEmail(ctx, email)
	if err != nil {
		return store.User{}, err
	}
	if err := s.st.SetDisabled(ctx, u.ID, disabled); err != nil {
		return store.User{}, err
	}
	if disabled {
		if _, err := s.st.DeleteUserSessions(ctx, u.ID, ""); err != nil {
			return store.User{}, err
		}
	}
	return s.st.GetUser(ctx, u.ID)
}
