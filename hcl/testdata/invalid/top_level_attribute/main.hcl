version = 2

source "warehouse" {
  type     = "embedded"
  fixtures = "data"
}
