// Command backflow keeps operational tools in step with SQL models,
// declaratively: see `backflow --help`.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
