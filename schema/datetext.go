package schema

// DateShaped reports whether s has the shape of MySQL's date text:
// YYYY-MM-DD, then optionally " HH:MM:SS" and a fraction, digits only. A
// MySQL source carries a date that names no day ('0000-00-00',
// '2024-02-30') as such text; destinations that take dates as text pass
// it on as it is.
func DateShaped(s string) bool {
	if len(s) != 10 && (len(s) < 19 || s[10] != ' ' || s[13] != ':' || s[16] != ':' || (len(s) > 19 && (s[19] != '.' || len(s) == 20))) {
		return false
	}
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return false
	}
	for i := range len(s) {
		switch i {
		case 4, 7, 10, 13, 16, 19:
			continue
		}
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
