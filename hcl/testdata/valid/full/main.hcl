source "warehouse" {
  type     = "embedded"
  fixtures = "data"
  table "users" {
    column_types = { age = "int", signup = "timestamp" }
  }
}

model "active_users" {
  source      = source.warehouse
  query       = file("models/active_users.sql")
  primary_key = "id"
}

model "orders" {
  source      = source.warehouse
  query       = <<-SQL
    SELECT id, user_id FROM orders
  SQL
  primary_key = ["user_id", "id"]
}

destination "crm" {
  type          = "sqlite"
  path          = "crm.db"
  batch_size    = 50
  split_retries = true
  timeout       = "10s"
  init_sql      = "CREATE TABLE IF NOT EXISTS contacts (external_id TEXT PRIMARY KEY)"
  retry {
    max_attempts    = 6
    initial_backoff = "100ms"
    max_backoff     = "20s"
    max_elapsed     = "5m"
  }
}

destination "api" {
  type = "http"
  url  = "https://api.example.com/records"
  headers = {
    Authorization = "Bearer ${upper("abc")}"
  }
}
