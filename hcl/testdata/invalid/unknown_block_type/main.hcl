modle "users" {
  source = source.warehouse
}
