sync "s" {
  model       = model.users
  destination = destination.crm
  object      = env("BACKFLOW_TEST_OBJECT", "contacts")
  key         = upper(env("BACKFLOW_TEST_KEY", "id"))
  mapping = {
    email = env("BACKFLOW_TEST_COLUMN", "email")
  }
}
