package config

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/backflowhq/backflow/redact"
	"github.com/backflowhq/backflow/repofs"
	"github.com/backflowhq/backflow/spec"
	"github.com/backflowhq/backflow/state"
)

// Block kinds that can be referenced as kind.name, in declaration order of
// dependencies: a kind may only refer to kinds listed before it.
const (
	kindSource      = "source"
	kindModel       = "model"
	kindDestination = "destination"
	kindSync        = "sync"
	kindTest        = "test"
)

var kinds = []string{kindSource, kindModel, kindDestination, kindSync, kindTest}

var topSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
	{Type: kindSource, LabelNames: []string{"name"}},
	{Type: kindModel, LabelNames: []string{"name"}},
	{Type: kindDestination, LabelNames: []string{"name"}},
	{Type: kindSync, LabelNames: []string{"name"}},
	{Type: kindTest, LabelNames: []string{"name"}},
	{Type: kindState},
}}

// Options tune Load.
type Options struct {
	// Catalog holds the families of typed blocks (source, destination):
	// which types exist and what arguments each takes. The loader knows no
	// type names of its own.
	Catalog spec.Catalog
}

// loader holds the state of one Load call.
type loader struct {
	opts  Options
	fsys  fs.FS  // everything the config reads comes from here
	fsDir string // the config folder in fsys
	dir   string // the config folder on disk, prefix of file names shown
	// size counts the bytes of config read (files, and file() results
	// each time one is returned), against MaxConfigSize.
	size  int64
	ctx   *hcl.EvalContext
	cfg   *Config
	names []string          // loaded .hcl files, relative to dir, sorted
	read  map[string][]byte // files read through file(), by path as written
	// secrets are the values env() returned; evalDiags are the diagnostics
	// produced while evaluating expressions, which may quote a value and so
	// are scrubbed of every secret before Load returns.
	secrets   []string
	evalDiags []*hcl.Diagnostic
	evalSeen  map[any]bool // see seen
	diags     hcl.Diagnostics
	// syntaxErrors are the ranges of the parser's errors: an expression
	// or block around one was only partly read, so problems found in it
	// would be noise (an unterminated string reads as "").
	syntaxErrors []hcl.Range
	// blockRanges maps each parsed block's body to the block's whole
	// range, which after a syntax error may extend past the body's.
	blockRanges map[*hclsyntax.Body]hcl.Range

	// decls maps kind → name → the first block declaring it; only the
	// first of duplicates is decoded into the Config.
	decls        map[string]map[string]*hcl.Block
	sources      map[string]*Source
	models       map[string]*Model
	destinations map[string]*Destination
	syncs        map[string]*Sync
}

// Load parses every *.hcl file of the folder dir together and resolves
// it, reading everything through a repofs.Dir rooted at the repository
// that holds dir: the nearest folder at or above dir with a .git entry, or
// dir itself when it is in no git repository (repofs.Locate). So file()
// and fixtures resolve inside that root only, and files are size-limited.
// It is LoadFS(fsys, path of dir in fsys, dir).
func Load(dir string, opts Options) (*Config, hcl.Diagnostics) {
	loc, err := repofs.Locate(dir)
	if err != nil {
		// dir is missing or not a folder: reading it will say so.
		loc = repofs.Location{Root: dir, Dir: "."}
	}
	fsys, err := repofs.NewDir(loc.Root)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read config folder",
			Detail:   fmt.Sprintf("The folder %q could not be read: %v. Check the path given with -C.", dir, err),
		}}
	}
	return LoadFS(fsys, loc.Dir, dir, opts)
}

// LoadFS parses every *.hcl file of the folder dir of fsys (an io/fs path,
// "." for its root) together and resolves it. Every file the config reads
// comes from fsys, relative to dir: *.hcl files, file() arguments, and,
// through Config.FS, fixtures. fsys confines those paths (a repofs file
// system refuses anything outside its root); LoadFS adds size limits to any
// fsys (MaxConfigFileSize, MaxConfigSize, repofs.MaxFileSize) and refuses
// what is not a regular file.
//
// base is the folder on disk the config stands for: it becomes Config.Dir,
// from which state and destination files written by backflow resolve (the
// only paths of a config that are not read through fsys), and the prefix of
// file names in diagnostics and Config.Files (filepath.Join(base, name)).
//
// The returned Config is non-nil whenever the files could be read, even
// with errors, so that callers can render diagnostics with Config.Files.
// Diagnostics are sorted by file and position.
func LoadFS(fsys fs.FS, dir, base string, opts Options) (*Config, hcl.Diagnostics) {
	l := &loader{
		opts:         opts,
		fsys:         fsys,
		fsDir:        dir,
		dir:          base,
		cfg:          &Config{Dir: base, FS: fsys, FSDir: dir, Files: map[string]*hcl.File{}},
		read:         map[string][]byte{},
		blockRanges:  map[*hclsyntax.Body]hcl.Range{},
		decls:        map[string]map[string]*hcl.Block{},
		sources:      map[string]*Source{},
		models:       map[string]*Model{},
		destinations: map[string]*Destination{},
		syncs:        map[string]*Sync{},
	}
	l.ctx = &hcl.EvalContext{Functions: l.functions()}

	blocks := l.parse()
	byKind := l.declare(blocks)
	for _, b := range byKind[kindSource] {
		l.decodeSource(b)
	}
	for _, b := range byKind[kindModel] {
		l.decodeModel(b)
	}
	for _, b := range byKind[kindDestination] {
		l.decodeDestination(b)
	}
	for _, b := range byKind[kindSync] {
		l.decodeSync(b)
	}
	for _, b := range byKind[kindTest] {
		l.decodeTest(b)
	}
	l.decodeState(byKind[kindState])
	l.cfg.Hash = l.hash()
	for name := range l.read {
		l.cfg.Reads = append(l.cfg.Reads, name)
	}
	sort.Strings(l.cfg.Reads)
	l.cfg.Redact = redact.New(l.secrets...)
	return l.cfg, l.finish()
}

// family returns the catalog's family of a block kind; a kind missing from
// the catalog has no types, so every type is unknown.
func (l *loader) family(kind string) *spec.Family {
	if f := l.opts.Catalog[kind]; f != nil {
		return f
	}
	return &spec.Family{Kind: kind, TypeArg: "type"}
}

// parse reads and parses the folder's files, returning their top-level
// blocks in file order.
func (l *loader) parse() hcl.Blocks {
	entries, err := fs.ReadDir(l.fsys, l.fsDir)
	if err != nil {
		l.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Cannot read config folder",
			Detail:   fmt.Sprintf("The folder %q could not be read: %v. Check the path given with -C.", l.dir, unwrapPathError(err)),
			Subject:  &hcl.Range{Filename: l.dir, Start: hcl.InitialPos, End: hcl.InitialPos},
		})
		return nil
	}
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".hcl") {
			l.names = append(l.names, e.Name())
		}
	}
	sort.Strings(l.names)
	if len(l.names) == 0 {
		l.add(&hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "No configuration files",
			Detail:   fmt.Sprintf("The folder %q has no *.hcl files. Run backflow in a config folder or point at one with -C.", l.dir),
			Subject:  &hcl.Range{Filename: l.dir, Start: hcl.InitialPos, End: hcl.InitialPos},
		})
		return nil
	}
	parser := hclparse.NewParser()
	var blocks hcl.Blocks
	for _, name := range l.names {
		display := filepath.Join(l.dir, name)
		at := &hcl.Range{Filename: display, Start: hcl.InitialPos, End: hcl.InitialPos}
		src, err := readConfigFile(l.fsys, path.Join(l.fsDir, name))
		if err == nil && l.grow(len(src)) != nil {
			err = errConfigTooLarge
		}
		if err != nil {
			summary, detail := pathProblem(err)
			l.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  summary,
				Detail:   fmt.Sprintf("The file %q could not be read: %s. %s", name, detail, configFilesAllowed),
				Subject:  at,
			})
			if errors.Is(err, errConfigTooLarge) {
				break
			}
			continue
		}
		if d := checkNesting(src, display); d != nil {
			// The parser recurses once per level: it must not see the file.
			// Nor is the file kept for snippets: its line may be huge.
			l.add(d)
			continue
		}
		f, diags := parser.ParseHCL(src, display)
		l.diags = append(l.diags, diags...)
		for _, d := range diags {
			if d.Severity == hcl.DiagError && d.Subject != nil {
				l.syntaxErrors = append(l.syntaxErrors, *d.Subject)
			}
		}
		if body, ok := f.Body.(*hclsyntax.Body); ok && diags.HasErrors() {
			l.indexBlocks(body)
		}
		if f == nil {
			continue
		}
		if body, ok := f.Body.(*hclsyntax.Body); ok {
			l.refuseLoops(body)
		}
		l.cfg.Files[display] = f
		content, diags := f.Body.Content(topSchema)
		l.diags = append(l.diags, diags...)
		blocks = append(blocks, content.Blocks...)
	}
	return blocks
}

// declare indexes blocks by kind and name, diagnosing invalid and duplicate
// names; it returns the blocks to decode per kind, duplicates included (so
// that problems inside them are reported too).
func (l *loader) declare(blocks hcl.Blocks) map[string]hcl.Blocks {
	byKind := map[string]hcl.Blocks{}
	for _, b := range blocks {
		if len(b.Labels) == 0 { // the state block: one, without a name
			byKind[b.Type] = append(byKind[b.Type], b)
			continue
		}
		name := b.Labels[0]
		if !hclsyntax.ValidIdentifier(name) {
			l.errorf(b.LabelRanges[0], "Invalid block name", "The name %q cannot be referenced as %s.%s. Use letters, digits, underscores and dashes, starting with a letter or underscore.", name, b.Type, name)
		} else if b.Type == kindSync && state.CheckSyncName(name) != nil {
			l.errorf(b.LabelRanges[0], "Invalid sync name", "The sync name %q names the sync's state, which takes ASCII letters, digits, underscores and dashes only, starting with a letter or underscore, at most %d of them. Rename the sync.", name, state.MaxSyncName)
		}
		seen := l.decls[b.Type]
		if seen == nil {
			seen = map[string]*hcl.Block{}
			l.decls[b.Type] = seen
		}
		if first, dup := seen[name]; dup {
			l.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Duplicate %s block", b.Type),
				Detail: fmt.Sprintf("A %s named %q is already declared at %s:%d. Names must be unique across all files of the folder: rename or remove one of them.",
					b.Type, name, first.DefRange.Filename, first.DefRange.Start.Line),
				Subject: b.DefRange.Ptr(),
			})
		} else {
			seen[name] = b
		}
		byKind[b.Type] = append(byKind[b.Type], b)
	}
	return byKind
}

// primary says whether b is the block a name resolves to (not a duplicate).
func (l *loader) primary(b *hcl.Block) bool {
	return l.decls[b.Type][b.Labels[0]] == b
}

// hash is sha256 over each file's path and bytes, in path order, loaded
// files and files read through file() alike. Lengths are written so that
// no two different sets of files produce the same stream.
func (l *loader) hash() string {
	files := map[string][]byte{}
	for _, name := range l.names {
		if f := l.cfg.Files[filepath.Join(l.dir, name)]; f != nil {
			files[name] = f.Bytes
		}
	}
	for name, b := range l.read {
		files["file:"+name] = b
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	var n [8]byte
	for _, name := range names {
		binary.BigEndian.PutUint64(n[:], uint64(len(name)))
		h.Write(n[:])
		h.Write([]byte(name))
		binary.BigEndian.PutUint64(n[:], uint64(len(files[name])))
		h.Write(n[:])
		h.Write(files[name])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// broken says whether rng holds the start of a syntax error.
func (l *loader) broken(rng hcl.Range) bool {
	for _, e := range l.syntaxErrors {
		if e.Filename == rng.Filename && e.Start.Byte >= rng.Start.Byte && e.Start.Byte <= rng.End.Byte {
			return true
		}
	}
	return false
}

// indexBlocks records the range of every block nested in body.
func (l *loader) indexBlocks(body *hclsyntax.Body) {
	for _, b := range body.Blocks {
		l.blockRanges[b.Body] = b.Range()
		l.indexBlocks(b.Body)
	}
}

// brokenBody says whether a block holds a syntax error, so that arguments
// missing from it may just not have been read.
func (l *loader) brokenBody(b *hcl.Block) bool {
	body, ok := b.Body.(*hclsyntax.Body)
	if !ok {
		return false
	}
	rng, ok := l.blockRanges[body]
	return ok && l.broken(rng)
}

func (l *loader) add(d *hcl.Diagnostic) { l.diags = append(l.diags, d) }

func (l *loader) errorf(subject hcl.Range, summary, format string, args ...any) {
	for i, a := range args {
		// A value quoted back from the config: the diagnostic shows its
		// line already, and a hostile one may be megabytes long.
		if s, ok := a.(string); ok {
			args[i] = spec.Clip(s, spec.QuotedMax)
		}
	}
	l.add(&hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject.Ptr(),
	})
}

// addEval records diagnostics from expression evaluation. They lose their
// Expression and EvalContext, which a diagnostic writer could use to print
// values, sensitive ones included.
//
// A diagnostic equal to one already recorded (a failing call inside a for
// expression) is dropped.
func (l *loader) addEval(diags hcl.Diagnostics) {
	for _, d := range diags {
		if !withholdSecretDiag(d) {
			rewriteFunctionDiag(d)
		}
		d.Expression, d.EvalContext = nil, nil
		if l.seen(d) {
			continue
		}
		l.evalDiags = append(l.evalDiags, d)
		l.add(d)
	}
}

// seen says whether an evaluation diagnostic like d was recorded already,
// and records it.
func (l *loader) seen(d *hcl.Diagnostic) bool {
	type key struct {
		summary, detail string
		subject         hcl.Range
	}
	k := key{summary: d.Summary, detail: d.Detail}
	if d.Subject != nil {
		k.subject = *d.Subject
	}
	if l.evalSeen == nil {
		l.evalSeen = map[any]bool{}
	}
	if l.evalSeen[k] {
		return true
	}
	l.evalSeen[k] = true
	return false
}

// finish masks secrets in every diagnostic (those of evaluation, and the
// loader's own, which may quote a value) and sorts them.
func (l *loader) finish() hcl.Diagnostics {
	for _, d := range l.diags {
		d.Summary = l.cfg.Redact.String(d.Summary)
		d.Detail = l.cfg.Redact.String(d.Detail)
	}
	sortDiagnostics(l.diags)
	return l.diags
}

// sortDiagnostics orders diagnostics by file and position, those without
// a subject first, keeping the order of equals.
func sortDiagnostics(diags hcl.Diagnostics) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
}
