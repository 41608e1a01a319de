package rules_test

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/rules"
	"github.com/backflowhq/backflow/schema"
)

func ExampleCompile() {
	columns := []schema.Column{
		{Name: "id", Type: schema.TypeInt},
		{Name: "email", Type: schema.TypeString, Nullable: true},
	}
	expr := "row.email == null || !row.email.contains('@')"
	prog, diags := rules.Compile(columns, []rules.Rule{{
		Name:  "missing_email",
		Expr:  expr,
		Raw:   []byte(`"` + expr + `"`),
		Range: hcl.Range{Filename: "main.hcl", Start: hcl.Pos{Line: 3, Column: 12}},
	}})
	if diags.HasErrors() {
		fmt.Println(diags.Error())
		return
	}
	for _, row := range [][]any{{int64(1), "ann@example.com"}, {int64(2), "nope"}, {int64(3), nil}} {
		rule, err := prog.Exclude(row)
		fmt.Printf("%v: %q %v\n", row[0], rule, err)
	}
	// Output:
	// 1: "" <nil>
	// 2: "missing_email" <nil>
	// 3: "missing_email" <nil>
}

func ExampleCompile_unknownColumn() {
	columns := []schema.Column{{Name: "email", Type: schema.TypeString, Nullable: true}}
	expr := "row.phone == null"
	_, diags := rules.Compile(columns, []rules.Rule{{
		Name:  "no_phone",
		Expr:  expr,
		Raw:   []byte(`"` + expr + `"`),
		Range: hcl.Range{Filename: "main.hcl", Start: hcl.Pos{Line: 3, Column: 12, Byte: 40}},
	}})
	for _, d := range diags {
		fmt.Printf("%s:%d:%d: %s\n", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, d.Detail)
	}
	// Output:
	// main.hcl:3:17: Exclude rule "no_phone" refers to column "phone", which the model does not have. Its columns are: email.
}
