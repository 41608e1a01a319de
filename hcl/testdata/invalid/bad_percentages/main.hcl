sync "over" {
  model             = model.users
  destination       = destination.crm
  object            = "contacts"
  key               = "id"
  failure_threshold = "150%"
}

sync "no_sign" {
  model             = model.users
  destination       = destination.crm
  object            = "contacts"
  key               = "id"
  failure_threshold = 5
}
