// Package project ties a config folder to the engines, rules and
// destinations it names: it loads the config, opens its sources, reads each
// model's columns, checks mappings and primary keys against them, compiles
// the exclude rules, and runs the commands' work (validate, plan, apply,
// reset-cdc, test) end to end. The CLI calls one function of this package
// per command and renders what it returns; everything a user can get wrong
// comes back as hcl.Diagnostics pointing into their files.
package project
