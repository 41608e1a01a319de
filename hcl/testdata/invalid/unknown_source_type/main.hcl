source "warehouse" {
  type = "snowflake"
  dsn  = "x"
}

source "typo" {
  type     = "embeded"
  fixtures = "data"
}
