destination "crm" {
  type = "sqlite"
}
