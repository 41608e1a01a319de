# An unterminated heredoc.
model "users" {
  source      = source.warehouse
  primary_key = "id"
  query       = <<EOT
    SELECT id FROM users
