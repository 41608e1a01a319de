package main

import (
	"runtime/debug"

	"github.com/spf13/cobra"

	config "github.com/backflowhq/backflow/hcl"
)

// commit can be set at link time (-ldflags "-X main.commit=…") when the
// build has no VCS stamp.
var commit string

// version is the module version and the commit it was built from, as far
// as the build recorded them.
func version() string {
	v, rev, dirty := "(devel)", commit, false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if rev == "" {
		return v + " (commit unknown)"
	}
	if dirty {
		rev += ", modified"
	}
	return v + " (commit " + rev + ")"
}

func newDocs(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "docs",
		Short: "Print the configuration reference (Markdown), generated from the drivers' argument specs",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return config.WriteReference(g.stdout, g.options().Catalog())
		},
	}
}
