-- API keys: only a keyed hash (HMAC-SHA-256 with a pepper) of each key is stored.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    tenant       TEXT,
    roles        TEXT NOT NULL DEFAULT '[]',   -- JSON array of strings
    scopes       TEXT NOT NULL DEFAULT '[]',   -- JSON array of strings
    hash         BLOB NOT NULL UNIQUE,         -- HMAC-SHA-256(pepper, key)
    created_at   INTEGER NOT NULL,             -- Unix seconds
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    rotated_from TEXT
);
