sync "s" {
  model       = model.users
  destination = destination.crm
  object      = "contacts"
  key         = "id"
  exclude "bad" {
    reason = "no condition"
    if     = "row.email == null"
  }
  exclude {
    when = "true"
  }
}
