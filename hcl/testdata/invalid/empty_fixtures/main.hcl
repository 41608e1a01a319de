source "warehouse" {
  type     = "embedded"
  fixtures = " "
}
