source "warehouse" {
  type    = "embedded"
  fixture = "data"
}
