-- The CRM's contacts table. lifetime_value must not be negative: refunds that
-- drove it below zero are rejected by the CHECK constraint.
CREATE TABLE IF NOT EXISTS contacts (
  external_id    INTEGER PRIMARY KEY,
  email          TEXT NOT NULL,
  full_name      TEXT,
  company        TEXT,
  tier           TEXT,
  lifetime_value REAL CHECK (lifetime_value >= 0)
);
