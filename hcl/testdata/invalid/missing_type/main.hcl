source "warehouse" {
  fixtures = "data"
}

destination "crm" {
  path = "crm.db"
}
