source "warehouse" {
  type = "embedded"
}

model "users" {
  source      = source.warehouse
  query       = ""
  primary_key = "id"
  columns     = ["id"]
}

destination "crm" {
  type       = "sqlite"
  path       = "crm.db"
  batch_size = -1
  retry {
    max_attempts = 0
  }
}

sync "s" {
  model           = model.users
  destination     = destination.crmm
  object          = "contacts"
  mode            = "merge"
  delete_behavior = "purge"
}
