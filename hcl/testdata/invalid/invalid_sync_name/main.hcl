# A name HCL takes (é is a letter) but the state cannot file records under.
sync "wh-é" {
  model       = model.users
  destination = destination.crm
  object      = "contacts"
  key         = "id"
}
