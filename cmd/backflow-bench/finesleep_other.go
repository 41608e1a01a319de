//go:build !unix

package main

import "time"

// fineSleep is time.Sleep where there is no nanosleep.
func fineSleep(d time.Duration) { time.Sleep(d) }
