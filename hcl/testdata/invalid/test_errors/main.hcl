sync "s" {
  model       = model.users
  destination = destination.crm
  object      = "contacts"
  key         = "id"
  exclude "missing_email" {
    when = "row.email == null"
  }
}

test "t" {
  sync            = sync.s
  expect_excluded = { "2" = "missing_emial", "3" = "other" }
  expect_sent     = [true]
  expect_rows     = { "1" = "a" }
  table "users" {
    rows = [1, 2]
  }
  table "orders" {
    rows = [{ id = 1, tags = ["x"] }]
  }
}

test "u" {
  sync = model.users
}

test "v" {
  sync = sync.nope
}
