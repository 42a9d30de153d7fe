package monitor

import (
	"context"

	"github.com/mailtls/mailtls/internal/store"
)

// RunClaimed runs one domain the test claimed itself (to stop a worker at
// a chosen step).
func (w *Worker) RunClaimed(ctx context.Context, c store.ClaimedDomain) { w.runDomain(ctx, c) }
