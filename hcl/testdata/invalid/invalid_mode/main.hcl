sync "s" {
  model       = model.users
  destination = destination.crm
  object      = "contacts"
  key         = "id"
  mode        = "upsrt"
}
