# An unterminated string: not also an unknown type "".
destination "crm" {
  type = "${"
}
