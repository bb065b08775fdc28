-- Failed logins, shared by every replica and kept across restarts. A row counts the
-- failures of one account from one address (`email`, `address`), of one account from
-- anywhere (`address` = ''), or of one address for any account (`email` = '').

CREATE TABLE login_throttles (
    email TEXT NOT NULL,
    address TEXT NOT NULL,
    failures INTEGER NOT NULL,
    first_failure_at TEXT NOT NULL,
    last_failure_at TEXT NOT NULL,
    blocked_until TEXT,
    PRIMARY KEY (email, address)
);
CREATE INDEX login_throttles_address_idx ON login_throttles (address);
CREATE INDEX login_throttles_last_idx ON login_throttles (last_failure_at);
