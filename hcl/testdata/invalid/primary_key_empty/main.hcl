source "warehouse" {
  type     = "embedded"
  fixtures = "data"
}

model "a" {
  source      = source.warehouse
  query       = "SELECT 1 AS id"
  primary_key = []
}

model "b" {
  source      = source.warehouse
  query       = "SELECT 1 AS id"
  primary_key = ""
}

model "c" {
  source      = source.warehouse
  query       = "SELECT 1 AS id"
  primary_key = ["id", "id"]
}
