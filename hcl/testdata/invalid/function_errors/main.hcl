source "warehouse" {
  type     = "embedded"
  fixtures = upper(1, 2)
}

destination "crm" {
  type = "sqlite"
  path = nosuchfunc("x")
}
