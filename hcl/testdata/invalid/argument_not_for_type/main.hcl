source "warehouse" {
  type     = "embedded"
  fixtures = "data"
  dsn      = "postgres://x"
}

destination "crm" {
  type    = "sqlite"
  path    = "crm.db"
  url     = "https://example.com"
  headers = { a = "b" }
}
