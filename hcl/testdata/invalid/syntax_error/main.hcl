source "warehouse" {
  type = "embedded"
  fixtures = "data"
