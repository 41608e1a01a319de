package destination

func init() { RegisterBuiltins(Default()) }

// RegisterBuiltins registers every driver of this package in r, so tests can
// build a fresh registry that behaves like Default.
func RegisterBuiltins(r *Registry) {
	r.Register("sqlite", OpenSQLite)
	r.Register("file", OpenFile)
	r.Register("postgres", OpenPostgres)
	r.Register("mysql", OpenMySQL)
	r.Register("http", OpenHTTP)
}
