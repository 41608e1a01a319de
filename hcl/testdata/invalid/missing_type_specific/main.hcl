source "pg" {
  type = "postgres"
}

destination "api" {
  type = "http"
}

destination "pg" {
  type = "postgres"
}

destination "out" {
  type = "file"
}
