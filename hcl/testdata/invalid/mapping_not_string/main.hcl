sync "s" {
  model       = model.users
  destination = destination.crm
  object      = "contacts"
  key         = "id"
  mapping = {
    email = email
    age   = 42
    tags  = ["a"]
    email = "email"
    name  = ""
  }
}
