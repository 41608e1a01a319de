package state

import (
	"context"
	"path/filepath"

	"github.com/backflowhq/backflow/redact"
	"github.com/backflowhq/backflow/spec"
)

// Config is what a state backend is opened with: the config folder, the
// backend's own arguments (decoded from its spec, defaults applied) and
// the redactor that masks env() values in its errors.
type Config struct {
	Dir    string // config folder
	Args   spec.Values
	Redact *redact.Redactor
	// DirOverride replaces the local folder (--state-dir); other backends
	// ignore it.
	DirOverride string
}

// Factory opens a state backend.
type Factory func(ctx context.Context, cfg Config) (Backend, error)

// Driver is a registered backend: its spec and its constructor.
type Driver = spec.Driver[Factory]

// Registry maps backend names to drivers. Tests build their own with
// NewRegistry; Default holds the built-in backends.
type Registry struct{ *spec.Registry[Factory] }

// NewRegistry returns a registry without any backend.
func NewRegistry() *Registry {
	return &Registry{spec.NewRegistry[Factory](spec.Family{
		Kind:        "state",
		TypeArg:     "backend",
		DefaultType: "local",
		Doc:         "Where state lives: snapshots, failure indexes, run history and locks. Optional: without a state block, the local folder .backflow beside the config.",
	})}
}

var defaultRegistry = NewRegistry()

func init() { RegisterBuiltins(defaultRegistry) }

// Default is the registry the built-in backends register themselves in.
func Default() *Registry { return defaultRegistry }

// DefaultFolder is the local state folder, relative to the config folder.
const DefaultFolder = ".backflow"

// RegisterBuiltins registers the backends of this package in r.
func RegisterBuiltins(r *Registry) {
	r.Register(Driver{
		Type: spec.Type{Name: "local", Doc: "A folder on this machine: compact binary snapshots, journaled checkpoints, files 0600 under one lock for the whole state.",
			Spec: spec.Spec{Args: []spec.Arg{{Name: "path", Kind: spec.String, Default: DefaultFolder,
				Doc: "The folder, relative to the config folder (--state-dir overrides it).", Example: `path = ".backflow"`}}}},
		Open: func(_ context.Context, cfg Config) (Backend, error) {
			s, err := Open(LocalDir(cfg))
			if err != nil {
				return nil, err
			}
			return s.Backend(), nil
		},
	})
	registerSQL(r)
}

// LocalDir is the folder of a local backend.
func LocalDir(cfg Config) string {
	if cfg.DirOverride != "" {
		return cfg.DirOverride
	}
	p := cfg.Args.String("path")
	if p == "" {
		p = DefaultFolder
	}
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(cfg.Dir, p)
}
