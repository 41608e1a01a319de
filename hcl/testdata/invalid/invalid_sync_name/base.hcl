source "warehouse" {
  type     = "embedded"
  fixtures = "data"
}

model "users" {
  source      = source.warehouse
  query       = "SELECT id, email FROM users"
  primary_key = "id"
}

destination "crm" {
  type = "sqlite"
  path = "crm.db"
}
