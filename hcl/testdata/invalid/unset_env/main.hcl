source "warehouse" {
  type = "postgres"
  dsn  = env("BACKFLOW_TEST_UNSET_VARIABLE_7F3A")
}
