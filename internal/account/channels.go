package account

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mailtls/mailtls/internal/store"
)

// Alert addresses other than the account's own: no alert goes to one
// before its reader opens the link mailed to it, so that the checker
// cannot be used to send mail to people who did not ask for it.

// ConfirmAddressTTL is how long a confirmation link of an alert address
// works.
const ConfirmAddressTTL = 48 * time.Hour

// ErrChannelGone: the link was good but its channel was removed since.
var ErrChannelGone = errors.New("account: the alert channel was removed")

// SendAddressConfirmation mails address a link that confirms it as an
// alert destination of the user's account. It runs in the background and
// counts against the per-address mail limit like every mail of the
// service (so adding and removing a channel cannot flood a mailbox).
func (s *Service) SendAddressConfirmation(ctx context.Context, user store.UserID, address string) error {
	return s.enqueue("confirm-address", func(ctx context.Context) error {
		u, err := s.st.GetUser(ctx, user)
		if err != nil {
			return err
		}
		tok, hash, err := s.newSecret()
		if err != nil {
			return err
		}
		if err := s.st.CreateOneTimeToken(ctx, store.PurposeConfirmAddress, hash, user, address, ConfirmAddressTTL); err != nil {
			return fmt.Errorf("storing the confirmation link: %w", err)
		}
		return s.send(ctx, address, "Confirm mailtls alerts to this address", fmt.Sprintf(`Hello,

the mailtls account %s at %s asked to send alerts about the mail
security (MTA-STS, TLS-RPT, DANE) of its domains to this address.
Open this link to confirm that you want them:

%s

The link works once, for %s. If you do not want these alerts, ignore this
mail: nothing more is sent to this address unless it is confirmed.
`, u.Email, s.base, s.link("/channels/confirm", tok), hours(ConfirmAddressTTL)))
	})
}

// ConfirmAddress uses a confirmation link: the account's e-mail channel to
// the address is verified and receives alerts from now on. Errors:
// ErrLinkUnknown, ErrLinkExpired, ErrLinkUsed, ErrChannelGone.
func (s *Service) ConfirmAddress(ctx context.Context, token string) (store.Channel, error) {
	t, err := s.consume(ctx, store.PurposeConfirmAddress, token)
	if err != nil {
		return store.Channel{}, err
	}
	chans, err := s.st.ListChannels(ctx, t.UserID)
	if err != nil {
		return store.Channel{}, err
	}
	for _, c := range chans {
		if c.Kind == store.ChannelEmail && c.Target == t.Email {
			if err := s.st.MarkChannelVerified(ctx, c.ID); err != nil {
				return store.Channel{}, err
			}
			return s.st.GetChannel(ctx, c.ID)
		}
	}
	return store.Channel{}, ErrChannelGone
}
