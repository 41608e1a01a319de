source "warehouse" {
  type     = "embedded"
  fixtures = ["data"]
}

destination "crm" {
  type          = "http"
  url           = "https://example.com"
  split_retries = "sometimes"
  headers       = ["a"]
}
