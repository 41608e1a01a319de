package suggest

import "testing"

func TestClosest(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []string
		want string
	}{
		{"batch_sise", []string{"batch_size", "path"}, "batch_size"},
		{"EMIAL", []string{"email", "name"}, "email"},
		{"zzz", []string{"email", "name"}, ""},
		{"a", []string{"b"}, ""}, // one edit, but as long as the candidate
		{"lifetime_valu", []string{"lifetime_value", "id"}, "lifetime_value"},
		{"customer_identifer", []string{"customer_identifier"}, "customer_identifier"},
		{"nme", []string{"name", "nmee"}, "name"},
	} {
		if got := Closest(tt.name, tt.in); got != tt.want {
			t.Errorf("Closest(%q, %v) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
	if d := Distance("kitten", "sitting"); d != 3 {
		t.Fatalf("Distance = %d, want 3", d)
	}
	if got := DidYouMean("emial", []string{"email"}); got != ` Did you mean "email"?` {
		t.Fatalf("DidYouMean = %q", got)
	}
}
