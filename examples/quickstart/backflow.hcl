# The quickstart: users of a warehouse (CSV fixtures on the embedded engine)
# synced to a CRM (a SQLite database created on first use).

source "warehouse" {
  type     = "embedded"
  fixtures = "data"
}

model "active_users" {
  source      = source.warehouse
  query       = file("models/active_users.sql")
  primary_key = "id"
}

destination "crm" {
  type          = "sqlite"
  path          = "crm.db"
  init_sql      = file("crm.sql")
  batch_size    = 50
  split_retries = true

  retry {
    max_attempts    = 4
    initial_backoff = "100ms"
    max_backoff     = "2s"
  }
}

sync "users_to_crm" {
  model             = model.active_users
  destination       = destination.crm
  object            = "contacts"
  key               = "external_id"
  mode              = "upsert"
  delete_behavior   = "delete"
  failure_threshold = "5%"

  mapping = {
    email          = "email"
    full_name      = "name"
    company        = "company"
    tier           = "tier"
    lifetime_value = "lifetime_value"
  }

  exclude "missing_email" {
    when   = "row.email == null || !row.email.contains('@')"
    reason = "the CRM rejects contacts without a valid email"
  }
}
