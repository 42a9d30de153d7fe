package daemon

import (
	"errors"

	"github.com/mailtls/mailtls/internal/config"
)

// newCertManager: ACME through certmagic lands in the next change; until
// then only static certificates work.
func newCertManager(d *Daemon, h *config.Host, httpsPort, httpPort int) (certManager, error) {
	return nil, errors.New("host.acme: automatic certificates are not in this build yet; set host.acme.disabled: true and give each domain cert and key files")
}
