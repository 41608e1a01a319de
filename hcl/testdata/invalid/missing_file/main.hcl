source "warehouse" {
  type     = "embedded"
  fixtures = "data"
}

model "users" {
  source      = source.warehouse
  query       = file("models/missing.sql")
  primary_key = "id"
}
