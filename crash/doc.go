// Package crash holds the crash harness, a test only: it builds the
// backflow binary, runs apply and reset-cdc as child processes against
// SQLite and PostgreSQL destinations with local and PostgreSQL state,
// kills them with SIGKILL at seeded random points (the named points of
// internal/crashpoint, and external kills after a random delay), changes
// the model between runs, and checks after every kill and after a final
// run that nothing was lost, duplicated or orphaned.
//
//	go test ./crash                                  # short: a fixed seed, about 20 kills
//	BACKFLOW_SOAK=200 go test ./crash -run Soak -v   # soak: 200 rounds, kill points listed
//	BACKFLOW_CRASH_SEED=7 …                          # another seed
package crash
