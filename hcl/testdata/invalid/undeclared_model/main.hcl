sync "s" {
  model       = model.user
  destination = destination.crm
  object      = "contacts"
  key         = "id"
}
