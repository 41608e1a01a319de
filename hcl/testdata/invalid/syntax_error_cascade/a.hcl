# A single-line block with two arguments: only the syntax error is
# reported, not the "fixtures" argument the parser could not read.
source "warehouse" { type = "embedded" fixtures = "data" }
