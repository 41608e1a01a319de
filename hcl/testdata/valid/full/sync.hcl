sync "users_to_crm" {
  model             = model.active_users
  destination       = destination.crm
  object            = "contacts"
  key               = "external_id"
  mode              = "update"
  delete_behavior   = "delete"
  failure_threshold = "5%"
  mapping = {
    full_name = "name"
    email     = "email"
  }
  exclude "missing_email" {
    when   = "row.email == null || !row.email.contains('@')"
    reason = "the CRM rejects contacts without a valid email"
  }
  exclude "internal" {
    when = <<-CEL
      row.email.endsWith('@example.com')
    CEL
  }
  sensitive_fields = ["email"]
}

sync "orders_to_api" {
  model       = model.orders
  destination = destination.api
  object      = "orders"
  key         = "id"

  redact_values = true
}

test "excludes_bad_emails" {
  sync     = sync.users_to_crm
  fixtures = "testdata/users"
  table "users" {
    rows = [
      { id = 1, email = "a@b.c", score = 1.5, active = true, note = null },
      { id = 2, email = "nope", score = 2, active = false, note = "x" },
    ]
  }
  expect_excluded = { "2" = "missing_email" }
  expect_sent     = ["1", 3]
  expect_rows = {
    "1" = { email = "a@b.c", full_name = null }
  }
}
