// Command mailtls makes inbound mail transport security real for a domain:
// it scans MTA-STS (RFC 8461), TLS-RPT (RFC 8460) and DANE (RFC 7672) and
// says exactly what to publish. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], DefaultEnv())
	stop()
	os.Exit(code)
}
