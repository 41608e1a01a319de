package main

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// TestPlanOutOnlyWritesARegularFileItOwns points plan --out at a symlink,
// a FIFO and a device: each is refused and left as it was; a plan written
// is 0600.
func TestPlanOutOnlyWritesARegularFileItOwns(t *testing.T) {
	dir := copyDir(t, "../../examples/quickstart")
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.plan")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.plan")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{link, fifo, "/dev/null"} {
		code, _, errOut := backflow("-C", dir, "plan", "--out", out)
		if code != 1 || !strings.Contains(errOut, "refusing to write the plan to "+out) {
			t.Errorf("plan --out %s: exit %d\n%s", out, code, errOut)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "keep me" {
		t.Errorf("the symlink's target was written: %q", b)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced: %v %v", fi, err)
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced: %v %v", fi, err)
	}
	planFile := filepath.Join(dir, "ok.plan")
	if code, _, errOut := backflow("-C", dir, "plan", "--out", planFile); code != 0 {
		t.Fatalf("plan --out: exit %d\n%s", code, errOut)
	}
	if fi, err := os.Stat(planFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("plan file mode %v (%v), want 0600", fi.Mode(), err)
	}
}

// TestTamperedPlanIsRefused edits a saved plan two ways: without fixing its
// checksum (refused as damaged), and with the checksum recomputed but the
// object changed to another table (refused as not the config's).
func TestTamperedPlanIsRefused(t *testing.T) {
	dir := copyDir(t, "../../examples/quickstart")
	planFile := filepath.Join(dir, "p.plan")
	if code, _, errOut := backflow("-C", dir, "plan", "--out", planFile); code != 0 {
		t.Fatalf("plan --out: exit %d\n%s", code, errOut)
	}
	data, err := os.ReadFile(planFile)
	if err != nil {
		t.Fatal(err)
	}
	// The saved plan's format: magic, a header chunk (17-byte header, then
	// the plan's JSON deflated), the changes' chunks, then a trailer of
	// magic and the SHA-256 of everything before it.
	const magic, head, trailer = 8, 17, 8 + sha256.Size
	stored := int(binary.LittleEndian.Uint32(data[magic+8:]))
	header, err := io.ReadAll(flate.NewReader(bytes.NewReader(data[magic+head : magic+head+stored])))
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(header, []byte(`"object":"contacts"`), []byte(`"object":"accounts"`), 1)
	if bytes.Equal(edited, header) {
		t.Fatal("the plan names no object to edit")
	}
	var z bytes.Buffer
	zw, _ := flate.NewWriter(&z, flate.BestSpeed)
	zw.Write(edited)
	zw.Close()
	chunk := make([]byte, head)
	copy(chunk, data[magic:magic+head])
	binary.LittleEndian.PutUint32(chunk[4:], uint32(len(edited)))
	binary.LittleEndian.PutUint32(chunk[8:], uint32(z.Len()))
	binary.LittleEndian.PutUint32(chunk[12:], crc32.Checksum(z.Bytes(), crc32.MakeTable(crc32.Castagnoli)))
	body := append(append(append([]byte{}, data[:magic]...), chunk...), z.Bytes()...)
	body = append(body, data[magic+head+stored:len(data)-trailer]...)
	write := func(sum []byte) {
		b := append(append(append([]byte{}, body...), data[len(data)-trailer:len(data)-sha256.Size]...), sum...)
		if err := os.WriteFile(planFile, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(data[len(data)-sha256.Size:])
	if code, _, errOut := backflow("-C", dir, "apply", planFile); code != 1 || !strings.Contains(errOut, "modified or damaged") {
		t.Fatalf("plan edited without its checksum: exit %d\n%s", code, errOut)
	}
	sum := sha256.Sum256(body)
	write(sum[:])
	code, out, errOut := backflow("-C", dir, "apply", planFile)
	if code != 1 || !strings.Contains(errOut, `the plan's object is "accounts", the config's "contacts"`) || strings.Contains(out, "accepted") {
		t.Fatalf("plan edited with its checksum: exit %d\n%s%s", code, out, errOut)
	}
}

// resealHeader is a saved plan with its header's JSON passed through edit
// and every checksum recomputed (the header chunk's CRC, the file's
// SHA-256), as anyone able to write the file can do: that checksum has no
// key.
func resealHeader(t *testing.T, data []byte, edit func([]byte) []byte) []byte {
	t.Helper()
	const magic, head, trailer = 8, 17, 8 + sha256.Size
	stored := int(binary.LittleEndian.Uint32(data[magic+8:]))
	header, err := io.ReadAll(flate.NewReader(bytes.NewReader(data[magic+head : magic+head+stored])))
	if err != nil {
		t.Fatal(err)
	}
	edited := edit(header)
	var z bytes.Buffer
	zw, _ := flate.NewWriter(&z, flate.BestSpeed)
	zw.Write(edited)
	zw.Close()
	chunk := make([]byte, head)
	copy(chunk, data[magic:magic+head])
	binary.LittleEndian.PutUint32(chunk[4:], uint32(len(edited)))
	binary.LittleEndian.PutUint32(chunk[8:], uint32(z.Len()))
	binary.LittleEndian.PutUint32(chunk[12:], crc32.Checksum(z.Bytes(), crc32.MakeTable(crc32.Castagnoli)))
	body := append(append(append([]byte{}, data[:magic]...), chunk...), z.Bytes()...)
	body = append(body, data[magic+head+stored:len(data)-trailer]...)
	sum := sha256.Sum256(body)
	return append(append(body, data[len(data)-trailer:len(data)-sha256.Size]...), sum[:]...)
}

// TestEditedPlanCannotSkipTheMassRemovalGuard saves a plan removing most
// of the quickstart's 275 records (its model keeps 5 users, none active), deletes mass_removal from its header
// and reseals it: apply decides from the plan's changes and the state,
// and refuses it all the same without --allow-mass-removal.
func TestEditedPlanCannotSkipTheMassRemovalGuard(t *testing.T) {
	dir := copyDir(t, "../../examples/quickstart")
	if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 || !strings.Contains(out, "275 accepted") {
		t.Fatalf("first apply: exit %d\n%s%s", code, out, errOut)
	}
	users := filepath.Join(dir, "data", "users.csv")
	b, err := os.ReadFile(users)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	if err := os.WriteFile(users, []byte(strings.Join(lines[:6], "")), 0o644); err != nil {
		t.Fatal(err)
	}
	planFile := filepath.Join(dir, "mr.plan")
	if code, out, errOut := backflow("-C", dir, "plan", "--out", planFile); code != 0 || !strings.Contains(out, "WARNING: mass removal") {
		t.Fatalf("plan --out: exit %d\n%s%s", code, out, errOut)
	}
	data, err := os.ReadFile(planFile)
	if err != nil {
		t.Fatal(err)
	}
	massRemoval := regexp.MustCompile(`,"mass_removal":\{[^}]*\}`)
	edited := resealHeader(t, data, func(h []byte) []byte {
		if !massRemoval.Match(h) {
			t.Fatalf("the plan's header has no mass_removal: %s", h)
		}
		return massRemoval.ReplaceAll(h, nil)
	})
	if err := os.WriteFile(planFile, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := backflow("-C", dir, "show", planFile); code != 0 || strings.Contains(out, "mass removal") {
		t.Fatalf("the edit did not take: show exits %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := backflow("-C", dir, "apply", planFile, "--auto-approve")
	if code != 1 || !strings.Contains(errOut, "Mass Removal Refused") || !strings.Contains(errOut, "of the 275 records synced, more than max_removals") || strings.Contains(out, "accepted") {
		t.Fatalf("edited plan: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := backflow("-C", dir, "apply", planFile, "--auto-approve", "--allow-mass-removal"); code != 0 || !strings.Contains(out, " accepted") {
		t.Fatalf("with --allow-mass-removal: exit %d\n%s%s", code, out, errOut)
	}
}
