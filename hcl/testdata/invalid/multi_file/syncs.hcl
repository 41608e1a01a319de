destination "crm" {
  type = "http"
}

sync "s" {
  model       = model.users
  destination = destination.crm
  object      = "contacts"
  key         = "id"
}

sync "s" {
  model       = model.userz
  destination = destination.crm
  object      = "contacts"
  key         = "id"
}
