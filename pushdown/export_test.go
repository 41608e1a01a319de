package pushdown

// ForceMD5 makes PostgreSQL hash with md5 of the row's text, as servers
// before 14 do, until the returned function restores the default.
func ForceMD5() func() {
	forceMD5 = true
	return func() { forceMD5 = false }
}
