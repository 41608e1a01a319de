sync "s" {
  model       = destination.crm
  destination = model.users
  object      = "contacts"
  key         = "id"
}
