sync "s" {
  model       = model.users
  destination = destination.crm
  object      = "contacts"
  key         = "id"
  exclude "bad" {
    when = "row.email == null"
  }
  exclude "bad" {
    when = "row.id < 0"
  }
  exclude "empty" {
    when = "  "
  }
}
