source "warehouse" {
  type = "postgres"
  dsn  = "postgres://localhost/db"
}
