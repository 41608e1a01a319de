package main

import (
	_ "github.com/dolthub/go-mysql-server"
	_ "github.com/dolthub/go-mysql-server/memory"
	_ "github.com/dolthub/go-mysql-server/sql"
	_ "github.com/go-git/go-git/v5"
	_ "github.com/go-sql-driver/mysql"
	_ "github.com/gofrs/flock"
	_ "github.com/google/cel-go/cel"
	_ "github.com/hashicorp/hcl/v2"
	_ "github.com/hashicorp/hcl/v2/hclsyntax"
	_ "github.com/hashicorp/hcl/v2/hclwrite"
	_ "github.com/hashicorp/hcl/v2/gohcl"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/rogpeppe/go-internal/testscript"
	_ "github.com/sergi/go-diff/diffmatchpatch"
	_ "github.com/spf13/cobra"
	_ "github.com/vbauerster/mpb/v8"
	_ "github.com/zclconf/go-cty/cty"
	_ "github.com/zeebo/xxh3"
	_ "modernc.org/sqlite"
	_ "github.com/cenkalti/backoff/v5"
)

func main() {}
