destination "crm" {
  type = "sqlite"
  path = "crm.db"
  retry {
    max_attempts    = 0
    initial_backoff = "1m"
    max_backoff     = "10s"
  }
  retry {
    max_attempts = 3
  }
}
