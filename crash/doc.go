// Package crash holds the crash harness, a test only: it builds the
// backflow binary, runs apply and reset-cdc as child processes against
// SQLite, PostgreSQL and MariaDB destinations with local, PostgreSQL and
// MariaDB state, in modes upsert and insert,
// kills them with SIGKILL at seeded random points (the named points of
// internal/crashpoint, and external kills after a random delay), changes
// the model between runs, and checks after every kill and after a final
// run that nothing was lost, duplicated or orphaned.
//
//	go test ./crash                                  # short: a fixed seed, about 25 kills
//	BACKFLOW_SOAK=200 go test ./crash -run Soak -v   # soak: 200 rounds, kill points listed
//	BACKFLOW_CRASH_SEED=7 …                          # replay a seed (the soak draws one)
//	BACKFLOW_CRASH_KEEP=1 …                          # keep the project folders
//
// The soak's seed comes from the clock, which go test does not see: add
// -count=1 to soak again rather than print a cached result.
package crash
