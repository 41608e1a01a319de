# Offline tests of the sync: `backflow -C examples/quickstart test`.

test "rows_without_a_valid_email_are_excluded" {
  sync = sync.users_to_crm

  table "users" {
    rows = [
      { id = 1, email = "ada@example.com", first_name = "Ada", last_name = "Lovelace", account_id = 1, lifetime_value = 10.5, active = true },
      { id = 2, email = "not-an-email", first_name = "Alan", last_name = "Turing", account_id = 1, lifetime_value = 3, active = true },
      { id = 3, email = null, first_name = "Grace", last_name = "Hopper", account_id = 2, lifetime_value = 7, active = true },
      { id = 4, email = "ken@example.com", first_name = "Ken", last_name = "Thompson", account_id = 2, lifetime_value = 1, active = false },
    ]
  }

  expect_excluded = {
    "2" = "missing_email"
    "3" = "missing_email"
  }
  expect_sent = ["1"]
  expect_rows = {
    "1" = { full_name = "Ada Lovelace", company = "Acme Corp", tier = "pro" }
  }
}

test "the_fixtures_exclude_seven_rows" {
  sync = sync.users_to_crm

  expect_excluded = {
    "18"  = "missing_email"
    "54"  = "missing_email"
    "97"  = "missing_email"
    "194" = "missing_email"
    "223" = "missing_email"
    "286" = "missing_email"
    "291" = "missing_email"
  }
}
