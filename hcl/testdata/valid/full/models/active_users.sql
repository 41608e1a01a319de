SELECT id, email, name FROM users WHERE active
