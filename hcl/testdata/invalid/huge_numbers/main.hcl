destination "crm" {
  type       = "sqlite"
  path       = "crm.db"
  batch_size = 1e400

  retry {
    max_attempts = -99999999999999999999999
  }
}
