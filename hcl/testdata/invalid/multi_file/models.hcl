model "users" {
  source      = source.warehose
  query       = "SELECT * FROM users"
  primary_key = "id"
}
