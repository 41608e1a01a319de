package reconcile

import (
	"sync"
	"time"
)

// RateLimiter spaces the requests sent to one destination (rate_limit): a
// token bucket of one token refilled at the rate, so that requests go out
// no closer than 1/rate apart. Every sync writing to the destination
// shares one; it is safe for concurrent use.
type RateLimiter struct {
	mu    sync.Mutex
	every time.Duration // between two requests
	next  time.Time     // when the next request may go
}

// NewRateLimiter returns a limiter of perSecond requests per second, or
// nil (no limit) when perSecond is not positive.
func NewRateLimiter(perSecond float64) *RateLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &RateLimiter{every: time.Duration(float64(time.Second) / perSecond)}
}

// reserve takes the next slot and returns how long to wait from now
// before sending in it.
func (l *RateLimiter) reserve(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next.Before(now) {
		l.next = now
	}
	wait := l.next.Sub(now)
	l.next = l.next.Add(l.every)
	return wait
}
