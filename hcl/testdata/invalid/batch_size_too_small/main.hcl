destination "crm" {
  type       = "sqlite"
  path       = "crm.db"
  batch_size = 0
}

destination "other" {
  type       = "file"
  path       = "out.jsonl"
  batch_size = 2.5
}
