sync "s" {
  model       = "users"
  destination = "destination.crm"
  object      = "contacts"
  key         = "id"
}
