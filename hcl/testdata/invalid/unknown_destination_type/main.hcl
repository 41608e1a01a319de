destination "crm" {
  type = "salesforce"
}
