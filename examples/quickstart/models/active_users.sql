SELECT
  u.id,
  u.email,
  CONCAT(u.first_name, ' ', u.last_name) AS name,
  a.company,
  a.tier,
  u.lifetime_value
FROM users u
JOIN accounts a ON a.id = u.account_id
WHERE u.active
