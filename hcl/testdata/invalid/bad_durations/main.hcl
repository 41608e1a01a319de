destination "crm" {
  type    = "sqlite"
  path    = "crm.db"
  timeout = "-1s"
  retry {
    initial_backoff = "200"
    max_backoff     = "30 seconds"
    max_elapsed     = 5
  }
}
