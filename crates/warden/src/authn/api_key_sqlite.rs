//! The embedded API-key store: one SQLite file (WAL), migrations from the repository, queries
//! on a blocking thread so the request path never blocks.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, params};

use super::api_key::{ApiKeyStore, Pepper, StoreError, StoredKey, generate, random_base62};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[include_str!("../../migrations/0001_api_keys.sql")];

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// API keys in a SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteKeyStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

/// What [`SqliteKeyStore::create`] makes.
#[derive(Clone, Debug)]
pub struct NewKey {
    /// Human name.
    pub name: String,
    /// Tenant.
    pub tenant: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Expiry (Unix seconds).
    pub expires_at: Option<i64>,
}

impl SqliteKeyStore {
    /// Opens (creating if needed) and migrates the database at `path`. Fails on a file that is
    /// not a database, is locked beyond the busy timeout, or has a newer schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Duration::from_secs(5))
    }

    /// Like [`SqliteKeyStore::open`], waiting at most `busy_timeout` for a lock held elsewhere
    /// (after that a lookup fails and the request gets 503).
    pub fn open_with(path: impl AsRef<Path>, busy_timeout: Duration) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn =
            Connection::open(&path).map_err(|e| backend(format!("{}: {e}", path.display())))?;
        conn.busy_timeout(busy_timeout).map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| backend(format!("{}: {e}", path.display())))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        let version: usize = conn
            .query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))
            .map_err(backend)?
            .try_into()
            .map_err(backend)?;
        if version > MIGRATIONS.len() {
            return Err(backend(format!(
                "{}: schema version {version} is newer than this warden knows ({})",
                path.display(),
                MIGRATIONS.len()
            )));
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.unchecked_transaction().map_err(backend)?;
            tx.execute_batch(migration)
                .map_err(|e| backend(format!("migration {}: {e}", i + 1)))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
        }
        Ok(SqliteKeyStore {
            path,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(backend)
    }

    /// Creates a key; returns its record and the key itself (shown once, never stored).
    pub fn create(
        &self,
        pepper: &Pepper,
        new: &NewKey,
        now: i64,
    ) -> Result<(StoredKey, String), StoreError> {
        self.insert(pepper, new, now, None)
    }

    fn insert(
        &self,
        pepper: &Pepper,
        new: &NewKey,
        now: i64,
        rotated_from: Option<&str>,
    ) -> Result<(StoredKey, String), StoreError> {
        let key = generate();
        let record = StoredKey {
            id: format!("key_{}", random_base62(16)),
            name: new.name.clone(),
            tenant: new.tenant.clone(),
            roles: new.roles.clone(),
            scopes: new.scopes.clone(),
            hash: pepper.digest(&key),
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
            last_used_at: None,
            rotated_from: rotated_from.map(str::to_owned),
        };
        let roles = serde_json::to_string(&record.roles).map_err(backend)?;
        let scopes = serde_json::to_string(&record.scopes).map_err(backend)?;
        self.with(|conn| {
            conn.execute(
                "INSERT INTO api_keys (id, name, tenant, roles, scopes, hash, created_at, expires_at, rotated_from)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    record.id,
                    record.name,
                    record.tenant,
                    roles,
                    scopes,
                    &record.hash[..],
                    record.created_at,
                    record.expires_at,
                    record.rotated_from
                ],
            )
        })?;
        Ok((record, key))
    }

    /// Every key, newest first.
    pub fn list(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.with(|conn| {
            let mut statement = conn.prepare(&format!("{SELECT} ORDER BY created_at DESC, id"))?;
            let rows = statement.query_map([], row_to_key)?;
            rows.collect()
        })
    }

    /// One key by id.
    pub fn get(&self, id: &str) -> Result<StoredKey, StoreError> {
        self.with(|conn| {
            conn.query_row(&format!("{SELECT} WHERE id = ?1"), [id], row_to_key)
                .optional()
        })?
        .ok_or_else(|| StoreError::NotFound(id.to_owned()))
    }

    /// Revokes a key at `now` (idempotent: an earlier revocation time is kept).
    pub fn revoke(&self, id: &str, now: i64) -> Result<(), StoreError> {
        let changed = self.with(|conn| {
            conn.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                params![id, now],
            )
        })?;
        if changed == 0 {
            return Err(StoreError::NotFound(id.to_owned()));
        }
        Ok(())
    }

    /// Replaces a key: a new key with the same attributes; the old one stays valid for `grace`
    /// (or until its own earlier expiry), then stops.
    pub fn rotate(
        &self,
        pepper: &Pepper,
        id: &str,
        grace: Duration,
        now: i64,
    ) -> Result<(StoredKey, String), StoreError> {
        let old = self.get(id)?;
        if old.active_at(now).is_err() {
            return Err(backend(format!(
                "key {id} is revoked or expired; create a new one instead"
            )));
        }
        let until = now + i64::try_from(grace.as_secs()).unwrap_or(i64::MAX / 2);
        self.with(|conn| {
            conn.execute(
                "UPDATE api_keys SET expires_at = MIN(COALESCE(expires_at, ?2), ?2) WHERE id = ?1",
                params![id, until],
            )
        })?;
        let new = NewKey {
            name: old.name.clone(),
            tenant: old.tenant.clone(),
            roles: old.roles.clone(),
            scopes: old.scopes.clone(),
            expires_at: old.expires_at,
        };
        self.insert(pepper, &new, now, Some(id))
    }
}

const SELECT: &str = "SELECT id, name, tenant, roles, scopes, hash, created_at, expires_at, revoked_at, last_used_at, rotated_from FROM api_keys";

fn row_to_key(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredKey> {
    let json_list = |index: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = row.get(index)?;
        serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                index,
                rusqlite::types::Type::Text,
                Box::new(e),
            )
        })
    };
    let hash: Vec<u8> = row.get(5)?;
    let hash: [u8; 32] = hash.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            5,
            rusqlite::types::Type::Blob,
            "hash is not 32 bytes".into(),
        )
    })?;
    Ok(StoredKey {
        id: row.get(0)?,
        name: row.get(1)?,
        tenant: row.get(2)?,
        roles: json_list(3)?,
        scopes: json_list(4)?,
        hash,
        created_at: row.get(6)?,
        expires_at: row.get(7)?,
        revoked_at: row.get(8)?,
        last_used_at: row.get(9)?,
        rotated_from: row.get(10)?,
    })
}

impl ApiKeyStore for SqliteKeyStore {
    fn find<'a>(
        &'a self,
        hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<Option<StoredKey>, StoreError>> {
        let store = self.clone();
        let hash = *hash;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                store.with(|conn| {
                    conn.query_row(
                        &format!("{SELECT} WHERE hash = ?1"),
                        [&hash[..]],
                        row_to_key,
                    )
                    .optional()
                })
            })
            .await
            .map_err(backend)?
        })
    }

    fn touch(&self, used: Vec<(String, i64)>) -> BoxFuture<'_, Result<(), StoreError>> {
        let store = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                store.with(|conn| {
                    let tx = conn.unchecked_transaction()?;
                    {
                        let mut statement = tx.prepare(
                            "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?2) WHERE id = ?1",
                        )?;
                        for (id, at) in &used {
                            statement.execute(params![id, at])?;
                        }
                    }
                    tx.commit()
                })
            })
            .await
            .map_err(backend)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("warden-sqlite-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir.join("keys.db")
    }

    #[tokio::test]
    async fn lifecycle_and_no_plaintext_at_rest() {
        let path = temp_db("lifecycle");
        let store = SqliteKeyStore::open(&path).expect("open");
        let pepper = Pepper::new(&[5u8; 32]).expect("pepper");
        let new = NewKey {
            name: "ci".into(),
            tenant: Some("acme".into()),
            roles: vec!["user".into()],
            scopes: vec!["read:agent".into()],
            expires_at: None,
        };
        let (record, key) = store.create(&pepper, &new, 100).expect("create");
        let found = store
            .find(&pepper.digest(&key))
            .await
            .expect("find")
            .expect("present");
        assert_eq!(found, record);
        store
            .touch(vec![(record.id.clone(), 150)])
            .await
            .expect("touch");
        assert_eq!(store.get(&record.id).expect("get").last_used_at, Some(150));

        let (rotated, new_key) = store
            .rotate(&pepper, &record.id, Duration::from_secs(60), 200)
            .expect("rotate");
        assert_eq!(rotated.rotated_from.as_deref(), Some(record.id.as_str()));
        assert_eq!(store.get(&record.id).expect("old").expires_at, Some(260));
        assert_ne!(new_key, key);
        store.revoke(&rotated.id, 300).expect("revoke");
        assert_eq!(store.get(&rotated.id).expect("get").revoked_at, Some(300));
        assert!(matches!(
            store.revoke("key_nope", 1),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.list().expect("list").len(), 2);

        drop(store);
        // Scan every byte of the database and its WAL for the keys.
        for file in [path.clone(), path.with_extension("db-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                for secret in [&key, &new_key] {
                    assert!(
                        !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                        "plaintext key in {}",
                        file.display()
                    );
                }
            }
        }
        // Reopening is idempotent (migrations already applied).
        let again = SqliteKeyStore::open(&path).expect("reopen");
        assert_eq!(again.list().expect("list").len(), 2);
    }

    #[test]
    fn garbage_files_are_refused_at_open() {
        let path = temp_db("garbage");
        std::fs::write(
            &path,
            b"this is not a database, just text that is long enough to matter....",
        )
        .expect("write");
        assert!(SqliteKeyStore::open(&path).is_err());
    }

    /// A near miss (a real key with one character changed, checksum recomputed so it passes the
    /// format check) must cost the same as a random wrong key: the lookup is by keyed hash, so
    /// how close a guess is cannot show in the timing.
    #[tokio::test]
    async fn near_miss_and_wrong_keys_take_the_same_time() {
        use crate::authn::api_key::{
            ApiKeyAuthenticator, ApiKeySettings, BODY_LEN, PREFIX, checksum,
        };
        use crate::authn::{AuthnError, InvalidReason};
        let store = SqliteKeyStore::open(temp_db("timing")).expect("open");
        let pepper = Pepper::new(&[7u8; 32]).expect("pepper");
        let new = NewKey {
            name: "t".into(),
            tenant: None,
            roles: vec![],
            scopes: vec![],
            expires_at: None,
        };
        let (_, key) = store.create(&pepper, &new, 0).expect("create");
        let body = &key[PREFIX.len()..PREFIX.len() + BODY_LEN];
        let near_body = format!(
            "{}{}",
            &body[..BODY_LEN - 1],
            if body.ends_with('a') { 'b' } else { 'a' }
        );
        let near_miss = format!("{PREFIX}{near_body}{}", checksum(&near_body));
        let clock = std::sync::Arc::new(crate::clock::SystemClock);
        let authenticator = ApiKeyAuthenticator::new(
            ApiKeySettings::default(),
            pepper,
            std::sync::Arc::new(store),
            clock,
        );
        let mut near_times = Vec::new();
        let mut wrong_times = Vec::new();
        for _ in 0..300 {
            let wrong = generate();
            for (candidate, times) in [(&near_miss, &mut near_times), (&wrong, &mut wrong_times)] {
                let start = std::time::Instant::now();
                let result = authenticator.verify(candidate).await;
                times.push(start.elapsed());
                assert!(matches!(
                    result,
                    Err(AuthnError::Invalid(InvalidReason::UnknownKey))
                ));
            }
        }
        near_times.sort();
        wrong_times.sort();
        let (near, wrong) = (
            near_times[150].as_secs_f64(),
            wrong_times[150].as_secs_f64(),
        );
        let ratio = near / wrong;
        assert!(
            (0.5..2.0).contains(&ratio),
            "median near miss {near:.6}s vs wrong key {wrong:.6}s"
        );
    }
}
