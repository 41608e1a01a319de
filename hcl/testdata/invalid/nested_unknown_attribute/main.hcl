destination "crm" {
  type = "sqlite"
  path = "crm.db"
  retry {
    max_attempt = 3
  }
  retri {
  }
}
