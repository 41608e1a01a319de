source "warehouse" {
  type     = "embedded"
  fixtures = "data"
  table "users" {
    column_types = { age = "integr", name = "string", score = 3 }
  }
  table "users" {
    column_types = { x = "int" }
  }
  table "orders" {
  }
}
