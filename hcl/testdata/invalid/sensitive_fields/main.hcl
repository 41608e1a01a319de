sync "not_mapped" {
  model            = model.users
  destination      = destination.crm
  object           = "contacts"
  key              = "id"
  mapping          = { email = "email" }
  sensitive_fields = ["emial"]
}

sync "the_key" {
  model            = model.users
  destination      = destination.crm
  object           = "contacts"
  key              = "id"
  mapping          = { id = "id", email = "email" }
  sensitive_fields = ["id", "email", "email"]
  redact_values    = "yes please"
}
