source "warehouse" {
  type = "mysql"
}
