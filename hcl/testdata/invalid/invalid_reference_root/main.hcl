sync "s" {
  model       = modle.users
  destination = destination.crm.path
  object      = "contacts"
  key         = "id"
}
