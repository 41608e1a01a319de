sync "s" {
  model           = model.users
  destination     = destination.crm
  object          = "contacts"
  key             = "id"
  delete_behavior = "remove"
}
