source "warehouse" {
  type     = "embedded"
  fixtures = "data"
}

model "users" {
  source = source.warehouse
}
