source "my warehouse" {
  type     = "embedded"
  fixtures = "data"
}
