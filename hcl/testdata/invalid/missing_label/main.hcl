source {
  type     = "embedded"
  fixtures = "data"
}
