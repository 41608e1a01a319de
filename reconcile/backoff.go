package reconcile

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff computes waits with exponential backoff and full jitter:
// random(0, min(cap, base·2^retry)), where retry counts from 0. A server's
// wait (Retry-After) is honoured when longer, up to cap.
type backoff struct {
	base, cap time.Duration
	rand      *rand.Rand
}

func (b backoff) wait(retry int, serverWait time.Duration) time.Duration {
	ceiling := b.cap
	if retry < 62 {
		if d := b.base << uint(retry); d >= 0 && d < ceiling {
			ceiling = d
		}
	}
	var d time.Duration
	if ceiling > 0 {
		d = time.Duration(b.rand.Int64N(int64(ceiling) + 1))
	}
	if serverWait > d {
		d = min(serverWait, b.cap)
	}
	return d
}

// sleepCtx waits for d or until ctx is done, so Ctrl-C is prompt.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
