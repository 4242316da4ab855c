//! One body per store method for both engines, in the style of
//! vaultwarden's `db_run!`: [`impl_store!`] expands every trait method once
//! for [`crate::SqliteStore`] and once for [`crate::PostgresStore`], each
//! time against that engine's pool (`self.pool`), so the compiler checks
//! every body against both drivers.
//!
//! SQL is written once with `$N` placeholders, which both drivers bind by
//! index (SQLite's `$NNN` parameters; checked by the `dollar_placeholders`
//! test). Where the dialects really differ, `engine!` picks the engine's
//! own tokens: the row order of signing keys (SQLite's `rowid`,
//! PostgreSQL's `seq`), retiring several algorithms at once (`= ANY`), the
//! outbox claim (`FOR UPDATE SKIP LOCKED`) and the server secret (one
//! SQLite write transaction). What each engine can store (PostgreSQL text
//! holds no U+0000) and how it names a violated constraint are inherent
//! functions of each store (`names_nothing`, `storable_text`,
//! `storable_import`, `user_conflict`, `workstation_conflict`), trivial on
//! SQLite.
//!
//! Statements that change rows and return them (`… RETURNING`) run inside a
//! transaction that commits only once every returned row has converted, so
//! a corrupt row never leaves a half-applied change behind.

/// The tokens of the engine named first: `engine!(sqlite, sqlite: {…}
/// postgres: {…})`.
macro_rules! engine {
    (sqlite, sqlite: { $($sqlite:tt)* } postgres: { $($postgres:tt)* }) => { $($sqlite)* };
    (postgres, sqlite: { $($sqlite:tt)* } postgres: { $($postgres:tt)* }) => { $($postgres)* };
}

/// Implement [`crate::Store`] and every aggregate trait for `$store` (a
/// struct with a `pool` field) on engine `$engine` (`sqlite` or
/// `postgres`).
macro_rules! impl_store {
    ($store:ident, $engine:ident) => {
        #[async_trait::async_trait]
        impl $crate::Store for $store {
            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn directory_generation(&self) -> StoreResult<i64> {
                // fetch_all, not fetch_one: the statement runs to completion,
                // so no read transaction is left open on a pooled SQLite
                // connection.
                let values: Vec<i64> = sqlx::query_scalar("SELECT value FROM directory_generation WHERE id = 1")
                    .fetch_all(&self.pool)
                    .await?;
                values.first().copied().ok_or_else(|| StoreError::Corrupt("directory_generation: no row".into()))
            }
        }

        #[async_trait::async_trait]
        impl $crate::UserStore for $store {
            async fn create_user(&self, user: &NewUser, password_hash: Option<&str>, now: i64) -> StoreResult<User> {
                let id = random_token(16);
                let roles = to_json("roles", &user.roles)?;

                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO users (id, username, name, email, roles, disabled, failed_logins, created_at) \
                     VALUES ($1, $2, $3, $4, $5, FALSE, 0, $6)",
                )
                .bind(&id)
                .bind(&user.username)
                .bind(&user.name)
                .bind(&user.email)
                .bind(&roles)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_on_unique(e, format!("user {:?}", user.username)))?;
                if let Some(hash) = password_hash {
                    sqlx::query("INSERT INTO credentials (user_id, kind, secret, created_at) VALUES ($1, $2, $3, $4)")
                        .bind(&id)
                        .bind(CredentialKind::Password.as_str())
                        .bind(hash)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;

                Ok(User {
                    id,
                    username: user.username.clone(),
                    name: user.name.clone(),
                    email: user.email.clone(),
                    roles: user.roles.clone(),
                    disabled: false,
                    failed_logins: 0,
                    last_failed_at: None,
                    created_at: now,
                    source: wardkey_core::user::LOCAL.to_string(),
                    external_id: None,
                    employee_number: None,
                    held: false,
                })
            }

            /// Case-insensitive, as usernames are unique (the
            /// `users_username_lower` index).
            async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
                if Self::names_nothing(username) {
                    return Ok(None);
                }
                select_optional!(
                    &self.pool,
                    UserRow,
                    "users",
                    concat!("SELECT ", user_columns!(), " FROM users WHERE lower(username) = lower($1)"),
                    username
                )
            }

            async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
                find_by!(self, UserRow, "users", user_columns, "id" = text id)
            }

            async fn list_users(&self) -> StoreResult<Vec<User>> {
                list_all!(self, UserRow, "users", user_columns, "username")
            }

            async fn set_user_disabled(&self, username: &str, disabled: bool, now: i64) -> StoreResult<()> {
                let not_found = || StoreError::NotFound(format!("user {username:?}"));
                if Self::names_nothing(username) {
                    return Err(not_found());
                }
                let mut tx = self.pool.begin().await?;
                let user_id: Option<String> =
                    sqlx::query_scalar(
                        "UPDATE users SET disabled = $1, held = $1 WHERE lower(username) = lower($2) RETURNING id",
                    )
                        .bind(disabled)
                        .bind(username)
                        .fetch_optional(&mut *tx)
                        .await?;
                let user_id = user_id.ok_or_else(not_found)?;
                if disabled {
                    sqlx::query("INSERT INTO session_revocations (user_id, requested_at) VALUES ($1, $2)")
                        .bind(&user_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn begin_login_attempt(
                &self,
                user_id: &str,
                now: i64,
                limit: u32,
                stale_before: i64,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE users SET attempt_at = $1 WHERE id = $2 AND failed_logins < $3 \
                     AND (attempt_at IS NULL OR attempt_at < $4)",
                )
                .bind(now)
                .bind(user_id)
                .bind(i64::from(limit))
                .bind(stale_before)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn end_login_attempt(&self, user_id: &str) -> StoreResult<()> {
                sqlx::query("UPDATE users SET attempt_at = NULL WHERE id = $1")
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            /// `NotFound` if no user has this id.
            async fn record_login_failure(&self, user_id: &str, now: i64) -> StoreResult<u32> {
                let not_found = || StoreError::NotFound(format!("user id {user_id:?}"));
                if Self::names_nothing(user_id) {
                    return Err(not_found());
                }
                let count: Option<i64> = sqlx::query_scalar(
                    "UPDATE users SET failed_logins = failed_logins + 1, last_failed_at = $1, attempt_at = NULL \
                     WHERE id = $2 RETURNING failed_logins",
                )
                .bind(now)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                checked_count("users", "failed_logins", count.ok_or_else(not_found)?)
            }

            /// Also clears `last_failed_at`. `NotFound` if no user has this id.
            async fn reset_login_failures(&self, user_id: &str) -> StoreResult<()> {
                let not_found = || StoreError::NotFound(format!("user id {user_id:?}"));
                if Self::names_nothing(user_id) {
                    return Err(not_found());
                }
                let done = sqlx::query(
                    "UPDATE users SET failed_logins = 0, last_failed_at = NULL, attempt_at = NULL WHERE id = $1",
                )
                .bind(user_id)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(not_found());
                }
                Ok(())
            }

            /// Each credential is stored with the user's `created_at` (the
            /// source does not say when it was set). `Conflict` (and nothing
            /// written) also if `credentials` names one kind twice. Text the
            /// engine cannot store unchanged is refused as `Corrupt` before
            /// anything is written.
            async fn import_user(&self, user: &User, credentials: &[(CredentialKind, String)]) -> StoreResult<()> {
                let what = format!("user {:?}", user.username);
                Self::storable_import(&what, "id", &user.id)?;
                Self::storable_import(&what, "username", &user.username)?;
                Self::storable_import(&what, "name", user.name.as_deref().unwrap_or_default())?;
                Self::storable_import(&what, "email", user.email.as_deref().unwrap_or_default())?;
                for (kind, hash) in credentials {
                    Self::storable_import(&what, &format!("{} hash", kind.as_str()), hash)?;
                }
                let roles = to_json("roles", &user.roles)?;

                let mut tx = self.pool.begin().await?;
                sqlx::query(concat!(
                    "INSERT INTO users (",
                    user_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                ))
                .bind(&user.id)
                .bind(&user.username)
                .bind(&user.name)
                .bind(&user.email)
                .bind(&roles)
                .bind(user.disabled)
                .bind(i64::from(user.failed_logins))
                .bind(user.last_failed_at)
                .bind(user.created_at)
                .bind(&user.source)
                .bind(&user.external_id)
                .bind(&user.employee_number)
                .bind(user.held)
                .execute(&mut *tx)
                .await
                .map_err(|e| Self::user_conflict(e, user))?;
                for (kind, hash) in credentials {
                    sqlx::query("INSERT INTO credentials (user_id, kind, secret, created_at) VALUES ($1, $2, $3, $4)")
                        .bind(&user.id)
                        .bind(kind.as_str())
                        .bind(hash)
                        .bind(user.created_at)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| conflict_on_unique(e, format!("{} credential of {what}", kind.as_str())))?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn remove_user(&self, username: &str, now: i64) -> StoreResult<User> {
                let not_found = || StoreError::NotFound(format!("user {username:?}"));
                if Self::names_nothing(username) {
                    return Err(not_found());
                }
                let mut tx = self.pool.begin().await?;
                let row: Option<UserRow> = sqlx::query_as(concat!(
                    "DELETE FROM users WHERE lower(username) = lower($1) RETURNING ",
                    user_columns!()
                ))
                .bind(username)
                .fetch_optional(&mut *tx)
                .await
                .map_err(decode_error("users"))?;
                let user = User::try_from(row.ok_or_else(not_found)?)?;
                sqlx::query("INSERT INTO session_revocations (user_id, requested_at) VALUES ($1, $2)")
                    .bind(&user.id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(user)
            }

            /// Each change is one or two statements in one transaction;
            /// a user disabled here (who was enabled) has their sessions
            /// ended as by [`UserStore::set_user_disabled`].
            async fn apply_user_changes(&self, changes: &[UserChange], now: i64) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                for change in changes {
                    let (id, changed) = match change {
                        UserChange::Create { source, record } => {
                            let insert = sqlx::query(concat!(
                                "INSERT INTO users (",
                                directory_columns!(),
                                ", created_at, failed_logins) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0)"
                            ));
                            bind_directory_record!(insert, random_token(16), source, record)
                                .bind(now)
                                .execute(&mut *tx)
                                .await
                                .map_err(|e| conflict_on_unique(e, format!("user {:?}", record.username)))?;
                            continue;
                        }
                        UserChange::Update { id, source, record } => {
                            if record.disabled {
                                revoke_if_enabled!(tx, id, now);
                            }
                            let update = sqlx::query(concat!(
                                "UPDATE users SET (",
                                directory_columns!(),
                                ") = ($1, $2, $3, $4, $5, $6 OR held, $7, $8, $9) WHERE id = $1"
                            ));
                            let done = bind_directory_record!(update, id, source, record)
                                .execute(&mut *tx)
                                .await
                                .map_err(|e| conflict_on_unique(e, format!("user {:?}", record.username)))?;
                            (id, done.rows_affected())
                        }
                        UserChange::Disable { id } => {
                            revoke_if_enabled!(tx, id, now);
                            let done = sqlx::query("UPDATE users SET disabled = TRUE WHERE id = $1")
                                .bind(id)
                                .execute(&mut *tx)
                                .await?;
                            (id, done.rows_affected())
                        }
                    };
                    if changed == 0 {
                        // Dropping the transaction rolls every change back.
                        return Err(StoreError::NotFound(format!("user id {id:?}")));
                    }
                }
                tx.commit().await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::CredentialStore for $store {
            async fn set_credential(
                &self,
                user_id: &str,
                kind: CredentialKind,
                hash: &str,
                now: i64,
            ) -> StoreResult<()> {
                let not_found = || StoreError::NotFound(format!("user id {user_id:?}"));
                if Self::names_nothing(user_id) {
                    return Err(not_found());
                }
                sqlx::query(
                    "INSERT INTO credentials (user_id, kind, secret, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (user_id, kind) DO UPDATE \
                     SET secret = EXCLUDED.secret, created_at = EXCLUDED.created_at",
                )
                .bind(user_id)
                .bind(kind.as_str())
                .bind(hash)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(|e| owner_or_backend(e, not_found))?;
                Ok(())
            }

            async fn credential(&self, user_id: &str, kind: CredentialKind) -> StoreResult<Option<String>> {
                if Self::names_nothing(user_id) {
                    return Ok(None);
                }
                sqlx::query_scalar("SELECT secret FROM credentials WHERE user_id = $1 AND kind = $2")
                    .bind(user_id)
                    .bind(kind.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(decode_error("credentials"))
            }

            /// Text the engine cannot store unchanged in `name` or `data` is
            /// refused as `Corrupt` before anything is written, rather than
            /// altered (this also imports credentials, which must arrive
            /// unchanged).
            async fn add_webauthn_credential(&self, credential: &WebauthnCredential) -> StoreResult<()> {
                let owner_not_found = || StoreError::NotFound(format!("user id {:?}", credential.user_id));
                if Self::names_nothing(&credential.user_id) {
                    return Err(owner_not_found());
                }
                Self::storable_import("webauthn credential", "name", &credential.name)?;
                Self::storable_import("webauthn credential", "data", &credential.data)?;
                sqlx::query(concat!(
                    "INSERT INTO webauthn_credentials (",
                    webauthn_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ))
                .bind(&credential.id)
                .bind(&credential.user_id)
                .bind(credential.kind.as_str())
                .bind(&credential.name)
                .bind(&credential.data)
                .bind(credential.created_at)
                .bind(credential.last_used_at)
                .bind(credential.suspended_at)
                .execute(&self.pool)
                .await
                .map_err(|e| owner_or_conflict(e, owner_not_found, "webauthn credential"))?;
                Ok(())
            }

            async fn webauthn_credentials(&self, user_id: &str) -> StoreResult<Vec<WebauthnCredential>> {
                if Self::names_nothing(user_id) {
                    return Ok(Vec::new());
                }
                select_all!(
                    &self.pool,
                    WebauthnRow,
                    "webauthn_credentials",
                    concat!(
                        "SELECT ",
                        webauthn_columns!(),
                        " FROM webauthn_credentials WHERE user_id = $1 ORDER BY created_at, id",
                    ),
                    user_id,
                )
            }

            async fn webauthn_credential(&self, id: &[u8]) -> StoreResult<Option<WebauthnCredential>> {
                find_by!(self, WebauthnRow, "webauthn_credentials", webauthn_columns, "id" = id)
            }

            /// `data` the engine cannot store unchanged is refused as
            /// `Corrupt`, as in `add_webauthn_credential`.
            async fn update_webauthn_credential(&self, id: &[u8], data: &str, used_at: i64) -> StoreResult<()> {
                Self::storable_import("webauthn credential", "data", data)?;
                change_one!(
                    self,
                    || StoreError::NotFound("webauthn credential".to_string()),
                    "UPDATE webauthn_credentials SET data = $1, last_used_at = $2 WHERE id = $3",
                    data,
                    used_at,
                    id,
                )
            }

            async fn remove_webauthn_credential(&self, user_id: &str, id: &[u8]) -> StoreResult<()> {
                let not_found = || StoreError::NotFound(format!("webauthn credential of user id {user_id:?}"));
                if Self::names_nothing(user_id) {
                    return Err(not_found());
                }
                change_one!(
                    self,
                    not_found,
                    "DELETE FROM webauthn_credentials WHERE id = $1 AND user_id = $2",
                    id,
                    user_id,
                )
            }

            async fn set_webauthn_suspended(&self, user_id: &str, id: &[u8], at: Option<i64>) -> StoreResult<()> {
                let not_found = || StoreError::NotFound("webauthn credential".to_string());
                if Self::names_nothing(user_id) {
                    return Err(not_found());
                }
                change_one!(
                    self,
                    not_found,
                    "UPDATE webauthn_credentials SET suspended_at = $1 WHERE user_id = $2 AND id = $3",
                    at,
                    user_id,
                    id,
                )
            }

            async fn create_invite(&self, digest: &[u8], user_id: &str, now: i64, expires_at: i64) -> StoreResult<()> {
                let not_found = || StoreError::NotFound(format!("user id {user_id:?}"));
                if Self::names_nothing(user_id) {
                    return Err(not_found());
                }
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM invites WHERE expires_at <= $1").bind(now).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO invites (digest, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
                    .bind(digest)
                    .bind(user_id)
                    .bind(now)
                    .bind(expires_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| owner_or_conflict(e, not_found, "invite"))?;
                tx.commit().await?;
                Ok(())
            }

            /// One `DELETE … RETURNING`: of two callers taking the same
            /// invite at once, the second waits for the first's write lock
            /// (SQLite's one writer, PostgreSQL's row lock), then finds the
            /// row gone.
            async fn take_invite(&self, digest: &[u8], now: i64) -> StoreResult<Option<String>> {
                let mut tx = self.pool.begin().await?;
                let user_id: Option<String> =
                    sqlx::query_scalar("DELETE FROM invites WHERE digest = $1 AND expires_at > $2 RETURNING user_id")
                        .bind(digest)
                        .bind(now)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(decode_error("invites"))?;
                tx.commit().await?;
                Ok(user_id)
            }
        }

        #[async_trait::async_trait]
        impl $crate::ClientStore for $store {
            /// A `min_acr` that is not an acr Wardkey issues is refused as
            /// `Corrupt` (it could never be met, and would read back as a
            /// corrupt row).
            async fn create_client(&self, client: &Client) -> StoreResult<()> {
                storable_client(client)?;
                sqlx::query(concat!(
                    "INSERT INTO clients (",
                    client_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ))
                .bind(&client.client_id)
                .bind(to_json("auth", &client.auth)?)
                .bind(to_json("redirect_uris", &client.redirect_uris)?)
                .bind(to_json("post_logout_redirect_uris", &client.post_logout_redirect_uris)?)
                .bind(&client.backchannel_logout_uri)
                .bind(to_json("grant_types", &client.grant_types)?)
                .bind(&client.start_url)
                .bind(client.id_token_alg.as_str())
                .bind(client.created_at)
                .bind(&client.min_acr)
                .execute(&self.pool)
                .await
                .map_err(|e| conflict_on_unique(e, format!("client {:?}", client.client_id)))?;
                Ok(())
            }

            async fn client(&self, client_id: &str) -> StoreResult<Option<Client>> {
                find_by!(self, ClientRow, "clients", client_columns, "client_id" = text client_id)
            }

            async fn list_clients(&self) -> StoreResult<Vec<Client>> {
                list_all!(self, ClientRow, "clients", client_columns, "client_id")
            }

            async fn remove_client(&self, client_id: &str) -> StoreResult<()> {
                let not_found = || StoreError::NotFound(format!("client {client_id:?}"));
                if Self::names_nothing(client_id) {
                    return Err(not_found());
                }
                change_one!(self, not_found, "DELETE FROM clients WHERE client_id = $1", client_id)
            }
        }

        #[async_trait::async_trait]
        impl $crate::KeyStore for $store {
            async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
                // Keys created in the same second keep their insertion order:
                // SQLite's rowid, PostgreSQL's `seq` column.
                const SQL: &str = engine!($engine,
                    sqlite: {
                        concat!("SELECT ", key_columns!(), " FROM signing_keys ORDER BY created_at DESC, rowid DESC")
                    }
                    postgres: {
                        concat!("SELECT ", key_columns!(), " FROM signing_keys ORDER BY created_at DESC, seq DESC")
                    }
                );
                select_all!(
                    &self.pool,
                    KeyRow,
                    "signing_keys",
                    SQL,
                )
            }

            /// `Conflict` (and nothing changed) if a new key's `kid` is taken.
            async fn rotate_signing_keys(&self, new_keys: &[SigningKey], now: i64) -> StoreResult<()> {
                let mut algs: Vec<&str> = new_keys.iter().map(|k| k.alg.as_str()).collect();
                algs.sort_unstable();
                algs.dedup();

                let mut tx = self.pool.begin().await?;
                engine!($engine,
                    // SQLite binds no arrays: one statement per algorithm.
                    sqlite: {
                        for alg in algs {
                            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL AND alg = $2")
                                .bind(now)
                                .bind(alg)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    postgres: {
                        if !algs.is_empty() {
                            sqlx::query(
                                "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL AND alg = ANY($2)",
                            )
                            .bind(now)
                            .bind(&algs)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                );
                for key in new_keys {
                    insert_key!(key).execute(&mut *tx).await.map_err(|e| key_conflict(e, key))?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn purge_signing_keys(&self, retired_before: i64) -> StoreResult<u64> {
                let done = sqlx::query("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1")
                    .bind(retired_before)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            /// A `kid` the engine cannot store unchanged is refused as
            /// `Corrupt`, as in `import_user`.
            async fn import_signing_key(&self, key: &SigningKey) -> StoreResult<()> {
                Self::storable_import(&format!("signing key {:?}", key.kid), "kid", &key.kid)?;
                insert_key!(key).execute(&self.pool).await.map_err(|e| key_conflict(e, key))?;
                Ok(())
            }

            /// Insert-if-absent then read, so racing callers all get
            /// whichever candidate was stored first.
            async fn server_secret(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>> {
                const INSERT: &str =
                    "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
                const SELECT: &str = "SELECT value FROM server_secrets WHERE name = $1";
                engine!($engine,
                    // In one write transaction.
                    sqlite: {{
                        let mut tx = self.pool.begin().await?;
                        sqlx::query(INSERT).bind(name).bind(candidate).execute(&mut *tx).await?;
                        let value: Vec<u8> = sqlx::query_scalar(SELECT)
                            .bind(name)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(decode_error("server_secrets"))?;
                        tx.commit().await?;
                        Ok(value)
                    }}
                    // The read is a second statement, which sees whichever
                    // candidate was committed first: an insert racing ours
                    // waits for the other to commit, then does nothing.
                    postgres: {{
                        sqlx::query(INSERT).bind(name).bind(candidate).execute(&self.pool).await?;
                        sqlx::query_scalar(SELECT)
                            .bind(name)
                            .fetch_one(&self.pool)
                            .await
                            .map_err(decode_error("server_secrets"))
                    }}
                )
            }
        }

        #[async_trait::async_trait]
        impl $crate::WorkstationStore for $store {
            /// The workstation's `public_key`, `enabled` and `enrolled_at`
            /// are stored as given. `Conflict` also if its id or the code
            /// digest is taken.
            async fn create_workstation(
                &self,
                ws: &Workstation,
                code_digest: &[u8],
                code_expires_at: i64,
            ) -> StoreResult<()> {
                insert_workstation!(ws, Some(code_digest), Some(code_expires_at))
                    .execute(&self.pool)
                .await
                .map_err(|e| Self::workstation_conflict(e, ws))?;
                Ok(())
            }

            /// The code must expire strictly after `now`, and the workstation
            /// must not hold a key yet. A disabled workstation can enrol (it
            /// stays disabled). Returns the enrolled workstation. Of two
            /// callers redeeming one code at once, the second finds it gone:
            /// `NotFound`.
            async fn enrol_workstation(
                &self,
                code_digest: &[u8],
                public_key: &[u8],
                now: i64,
            ) -> StoreResult<Workstation> {
                let mut tx = self.pool.begin().await?;
                let row = sqlx::query_as::<_, WorkstationRow>(concat!(
                    "UPDATE workstations \
                     SET public_key = $1, enrolled_at = $2, enrol_code_digest = NULL, enrol_code_expires_at = NULL \
                     WHERE enrol_code_digest = $3 AND enrol_code_expires_at > $2 AND public_key IS NULL \
                     RETURNING ",
                    workstation_columns!()
                ))
                .bind(public_key)
                .bind(now)
                .bind(code_digest)
                .fetch_optional(&mut *tx)
                .await
                .map_err(decode_error("workstations"))?;
                let ws = row
                    .map(Workstation::try_from)
                    .transpose()?
                    .ok_or_else(|| StoreError::NotFound("unexpired enrolment code".to_string()))?;
                tx.commit().await?;
                Ok(ws)
            }

            async fn workstation(&self, id: &str) -> StoreResult<Option<Workstation>> {
                find_by!(self, WorkstationRow, "workstations", workstation_columns, "id" = text id)
            }

            async fn list_workstations(&self) -> StoreResult<Vec<Workstation>> {
                list_all!(self, WorkstationRow, "workstations", workstation_columns, "name")
            }

            async fn remove_workstation(&self, name: &str) -> StoreResult<()> {
                let not_found = || StoreError::NotFound(format!("workstation {name:?}"));
                if Self::names_nothing(name) {
                    return Err(not_found());
                }
                change_one!(self, not_found, "DELETE FROM workstations WHERE name = $1", name)
            }

            async fn set_workstation_enabled(&self, name: &str, enabled: bool) -> StoreResult<()> {
                let not_found = || StoreError::NotFound(format!("workstation {name:?}"));
                if Self::names_nothing(name) {
                    return Err(not_found());
                }
                change_one!(self, not_found, "UPDATE workstations SET enabled = $1 WHERE name = $2", enabled, name)
            }

            /// Text the engine cannot store unchanged is refused as
            /// `Corrupt`, as in `import_user`.
            async fn import_workstation(&self, ws: &Workstation) -> StoreResult<()> {
                let what = format!("workstation {:?}", ws.name);
                Self::storable_import(&what, "id", &ws.id)?;
                Self::storable_import(&what, "name", &ws.name)?;
                Self::storable_import(&what, "ward", &ws.ward)?;
                // No pending enrolment code.
                insert_workstation!(ws, None::<&[u8]>, None::<i64>)
                    .execute(&self.pool)
                .await
                .map_err(|e| Self::workstation_conflict(e, ws))?;
                Ok(())
            }

            /// `failed_pins` is stored as given. `NotFound` if the owner does
            /// not exist.
            async fn add_badge(&self, badge: &Badge) -> StoreResult<()> {
                let owner_not_found = || StoreError::NotFound(format!("user id {:?}", badge.user_id));
                if Self::names_nothing(&badge.user_id) {
                    return Err(owner_not_found());
                }
                sqlx::query(concat!("INSERT INTO badges (", badge_columns!(), ") VALUES ($1, $2, $3, $4)"))
                    .bind(&badge.digest)
                    .bind(&badge.user_id)
                    .bind(i64::from(badge.failed_pins))
                    .bind(badge.created_at)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| owner_or_conflict(e, owner_not_found, "badge"))?;
                Ok(())
            }

            async fn badge(&self, digest: &[u8]) -> StoreResult<Option<Badge>> {
                find_by!(self, BadgeRow, "badges", badge_columns, "digest" = digest)
            }

            async fn revoke_badge(&self, digest: &[u8]) -> StoreResult<()> {
                change_one!(
                    self,
                    || StoreError::NotFound("badge".to_string()),
                    "DELETE FROM badges WHERE digest = $1",
                    digest,
                )
            }

            /// An unknown user has none: 0.
            async fn revoke_user_badges(&self, user_id: &str) -> StoreResult<u64> {
                if Self::names_nothing(user_id) {
                    return Ok(0);
                }
                let done =
                    sqlx::query("DELETE FROM badges WHERE user_id = $1").bind(user_id).execute(&self.pool).await?;
                Ok(done.rows_affected())
            }

            async fn begin_pin_attempt(&self, digest: &[u8], limit: u32) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE badges SET pin_attempts = pin_attempts + 1 \
                     WHERE digest = $1 AND failed_pins + pin_attempts < $2",
                )
                .bind(digest)
                .bind(i64::from(limit))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn end_pin_attempt(&self, digest: &[u8]) -> StoreResult<()> {
                sqlx::query(concat!("UPDATE badges SET pin_attempts = ", release_pin_attempt!(), " WHERE digest = $1"))
                    .bind(digest)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            /// `NotFound` if the badge is not enrolled.
            async fn record_pin_failure(&self, digest: &[u8]) -> StoreResult<u32> {
                let count: Option<i64> = sqlx::query_scalar(concat!(
                    "UPDATE badges SET failed_pins = failed_pins + 1, pin_attempts = ",
                    release_pin_attempt!(),
                    " WHERE digest = $1 RETURNING failed_pins"
                ))
                .bind(digest)
                .fetch_optional(&self.pool)
                .await?;
                let count = count.ok_or_else(|| StoreError::NotFound("badge".to_string()))?;
                checked_count("badges", "failed_pins", count)
            }

            /// A user with no badges (or no such user) is not an error: a
            /// password login resets whether or not the user holds a badge.
            async fn reset_pin_failures(&self, user_id: &str) -> StoreResult<()> {
                if Self::names_nothing(user_id) {
                    return Ok(());
                }
                sqlx::query(
                    "UPDATE badges SET failed_pins = 0, pin_attempts = 0 WHERE user_id = $1 \
                     AND (failed_pins <> 0 OR pin_attempts <> 0)",
                )
                .bind(user_id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_badges(&self) -> StoreResult<Vec<Badge>> {
                list_all!(self, BadgeRow, "badges", badge_columns, "user_id, created_at, digest")
            }
        }

        #[async_trait::async_trait]
        impl $crate::LogoutStore for $store {
            /// Rows are written in (client, sid) order, so two batches
            /// touching the same notices cannot deadlock.
            async fn enqueue_logouts(&self, notices: &[NewLogoutNotice], due_at: i64, now: i64) -> StoreResult<()> {
                if notices.is_empty() {
                    return Ok(());
                }
                let mut ordered: Vec<&NewLogoutNotice> = notices.iter().collect();
                ordered.sort_by(|a, b| (&a.client_id, &a.sid).cmp(&(&b.client_id, &b.sid)));

                let mut tx = self.pool.begin().await?;
                for notice in ordered {
                    sqlx::query(
                        "INSERT INTO logout_outbox (client_id, sub, sid, attempts, next_attempt_at, created_at) \
                         VALUES ($1, $2, $3, 0, $4, $5) \
                         ON CONFLICT (client_id, sid) DO UPDATE SET next_attempt_at = CASE \
                         WHEN EXCLUDED.next_attempt_at < logout_outbox.next_attempt_at \
                         THEN EXCLUDED.next_attempt_at ELSE logout_outbox.next_attempt_at END",
                    )
                    .bind(&notice.client_id)
                    .bind(&notice.sub)
                    .bind(&notice.sid)
                    .bind(due_at)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            /// The oldest due first (by `next_attempt_at`, then id), returned
            /// in id order. One statement picks and leases them, so
            /// concurrent claims never share a notice: SQLite has one writer
            /// at a time; PostgreSQL locks the rows picked and skips rows
            /// another node is claiming rather than waiting for them.
            async fn claim_due_logouts(&self, now: i64, lease: i64, limit: u32) -> StoreResult<Vec<LogoutNotice>> {
                if limit == 0 || !self.anything_due(now).await? {
                    return Ok(Vec::new());
                }
                const SQL: &str = concat!(
                    "UPDATE logout_outbox SET next_attempt_at = $1 \
                     WHERE id IN (SELECT id FROM logout_outbox WHERE next_attempt_at <= $2 \
                                  ORDER BY next_attempt_at, id LIMIT $3",
                    engine!($engine, sqlite: { "" } postgres: { " FOR UPDATE SKIP LOCKED" }),
                    ") RETURNING ",
                    logout_columns!()
                );
                let mut tx = self.pool.begin().await?;
                let rows = sqlx::query_as::<_, LogoutRow>(SQL)
                    .bind(now.saturating_add(lease))
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(decode_error("logout_outbox"))?;
                let mut notices: Vec<LogoutNotice> = convert_all(rows)?;
                tx.commit().await?;
                // RETURNING yields rows in no particular order.
                notices.sort_by_key(|n| n.id);
                Ok(notices)
            }

            /// A notice already gone (abandoned, or delivered by another node
            /// after its lease ran out) is not an error.
            async fn logout_delivered(&self, id: i64) -> StoreResult<()> {
                sqlx::query("DELETE FROM logout_outbox WHERE id = $1").bind(id).execute(&self.pool).await?;
                Ok(())
            }

            /// A notice already gone is not an error.
            async fn postpone_logout(&self, id: i64, next_attempt_at: i64) -> StoreResult<()> {
                sqlx::query("UPDATE logout_outbox SET next_attempt_at = $1 WHERE id = $2")
                    .bind(next_attempt_at)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            /// Keeps the first 500 characters of `error` (as the engine can
            /// store them). A notice already gone is not an error.
            async fn logout_failed(&self, id: i64, next_attempt_at: i64, error: &str) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE logout_outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 \
                     WHERE id = $3",
                )
                .bind(next_attempt_at)
                .bind(Self::storable_text(truncate_chars(error, MAX_LOGOUT_ERROR_CHARS)))
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            /// The user need not exist (any more): their sessions still end.
            /// An id no user can have has no sessions: nothing is queued.
            async fn request_session_revocation(&self, user_id: &str, now: i64) -> StoreResult<()> {
                if Self::names_nothing(user_id) {
                    return Ok(());
                }
                sqlx::query("INSERT INTO session_revocations (user_id, requested_at) VALUES ($1, $2)")
                    .bind(user_id)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            /// Each user once, in the order of their first pending request.
            /// Of two callers taking at once, each request goes to one of
            /// them.
            async fn take_session_revocations(&self) -> StoreResult<Vec<String>> {
                if !self.any_revocation_pending().await? {
                    return Ok(Vec::new());
                }
                let mut tx = self.pool.begin().await?;
                let mut requests: Vec<(i64, String)> =
                    sqlx::query_as("DELETE FROM session_revocations RETURNING id, user_id")
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(decode_error("session_revocations"))?;
                tx.commit().await?;
                // RETURNING yields rows in no particular order.
                requests.sort_by_key(|(id, _)| *id);
                let mut seen = std::collections::HashSet::new();
                Ok(requests
                    .into_iter()
                    .filter_map(|(_, user_id)| seen.insert(user_id.clone()).then_some(user_id))
                    .collect())
            }
        }

        #[async_trait::async_trait]
        impl $crate::GroupStore for $store {
            async fn list_groups(&self) -> StoreResult<Vec<ScimGroup>> {
                let groups: Vec<(String, String, Option<String>, i64, i64)> = sqlx::query_as(
                    "SELECT id, display_name, external_id, created_at, updated_at FROM scim_groups \
                     ORDER BY lower(display_name)",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(decode_error("scim_groups"))?;
                let members: Vec<(String, String)> =
                    sqlx::query_as("SELECT group_id, user_id FROM scim_group_members ORDER BY user_id")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(decode_error("scim_group_members"))?;
                let mut by_group: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
                for (group_id, user_id) in members {
                    by_group.entry(group_id).or_default().push(user_id);
                }
                Ok(groups
                    .into_iter()
                    .map(|(id, display_name, external_id, created_at, updated_at)| ScimGroup {
                        members: by_group.remove(&id).unwrap_or_default(),
                        id,
                        display_name,
                        external_id,
                        created_at,
                        updated_at,
                    })
                    .collect())
            }

            async fn save_group(&self, group: &ScimGroup, roles: &[(String, Vec<String>)]) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO scim_groups (id, display_name, external_id, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
                     display_name = excluded.display_name, external_id = excluded.external_id, \
                     updated_at = excluded.updated_at",
                )
                .bind(&group.id)
                .bind(Self::storable_text(&group.display_name))
                .bind(group.external_id.as_deref().map(Self::storable_text))
                .bind(group.created_at)
                .bind(group.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_on_unique(e, format!("group {:?}", group.display_name)))?;
                sqlx::query("DELETE FROM scim_group_members WHERE group_id = $1").bind(&group.id).execute(&mut *tx).await?;
                for member in &group.members {
                    sqlx::query("INSERT INTO scim_group_members (group_id, user_id) VALUES ($1, $2)")
                        .bind(&group.id)
                        .bind(member)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| owner_or_backend(e, || StoreError::NotFound(format!("user id {member:?}"))))?;
                }
                set_roles!(tx, roles);
                tx.commit().await?;
                Ok(())
            }

            async fn delete_group(&self, id: &str, roles: &[(String, Vec<String>)]) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query("DELETE FROM scim_groups WHERE id = $1").bind(id).execute(&mut *tx).await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("group id {id:?}")));
                }
                set_roles!(tx, roles);
                tx.commit().await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::AuditStore for $store {
            /// `event`, `actor` and `subject` are stored as the engine can
            /// hold them, so a record of a strange request is kept, not lost;
            /// the hash is over what is stored. The write lock comes first:
            /// `BEGIN IMMEDIATE` on SQLite (a deferred transaction would read
            /// a snapshot that another process's append can make stale, which
            /// SQLite refuses without waiting), the head row's lock on
            /// PostgreSQL (across nodes); so two writers never chain onto the
            /// same record.
            async fn append_audit_batch(&self, events: &[AuditEvent]) -> StoreResult<()> {
                if events.is_empty() {
                    return Ok(());
                }
                let mut tx = engine!($engine,
                    sqlite: { self.pool.begin_with("BEGIN IMMEDIATE").await? }
                    postgres: { self.pool.begin().await? }
                );
                // fetch_all: a SQLite statement left unfinished keeps its
                // transaction's locks past the commit.
                let heads: Vec<(i64, String)> =
                    sqlx::query_as("UPDATE audit_chain SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
                        .bind(events.len() as i64)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(decode_error("audit_chain"))?;
                let (last, mut prev) =
                    one_row(heads, "audit_chain")?;
                let first = last - events.len() as i64 + 1;
                for (seq, event) in (first..).zip(events) {
                    let stored = AuditEvent {
                        at: event.at,
                        event: Self::storable_text(&event.event).to_string(),
                        actor: Self::storable_text(&event.actor).to_string(),
                        subject: Self::storable_text(&event.subject).to_string(),
                        detail: serde_json::Value::Null,
                    };
                    let detail = to_json("audit detail", &event.detail)?;
                    let hash = record_hash(&prev, seq, &stored, &detail);
                    sqlx::query(concat!(
                        "INSERT INTO audit_log (",
                        audit_columns!(),
                        ", seq, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    ))
                    .bind(stored.at)
                    .bind(&stored.event)
                    .bind(&stored.actor)
                    .bind(&stored.subject)
                    .bind(&detail)
                    .bind(seq)
                    .bind(&prev)
                    .bind(&hash)
                    .execute(&mut *tx)
                    .await?;
                    prev = hash;
                }
                sqlx::query("UPDATE audit_chain SET hash = $1 WHERE id = 1").bind(&prev).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditEvent>> {
                select_all!(
                    &self.pool,
                    AuditRow,
                    "audit_log",
                    concat!("SELECT ", audit_columns!(), " FROM audit_log ORDER BY at DESC, id DESC LIMIT $1"),
                    i64::from(limit),
                )
            }

            async fn search_audit(&self, filter: &$crate::AuditFilter) -> StoreResult<Vec<$crate::AuditRecord>> {
                let event = filter.event.as_ref().map(|e| {
                    format!("{}%", e.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
                });
                select_all!(
                    &self.pool,
                    ChainedRow,
                    "audit_log",
                    concat!(
                        "SELECT ",
                        chained_columns!(),
                        " FROM audit_log WHERE seq IS NOT NULL \
                         AND ($1 IS NULL OR at >= $1) AND ($2 IS NULL OR at < $2) \
                         AND ($3 IS NULL OR event LIKE $3 ESCAPE '\\') \
                         AND ($4 IS NULL OR lower(actor) = lower($4)) \
                         AND ($5 IS NULL OR lower(subject) = lower($5)) \
                         AND ($6 IS NULL OR seq < $6) \
                         ORDER BY seq DESC LIMIT $7"
                    ),
                    filter.since,
                    filter.until,
                    event,
                    filter.actor.as_deref(),
                    filter.subject.as_deref(),
                    filter.before_seq,
                    i64::from(filter.limit),
                )
            }

            async fn audit_chain_page(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<ChainedRecord>> {
                select_all!(
                    &self.pool,
                    ChainedRow,
                    "audit_log",
                    concat!("SELECT ", chained_columns!(), " FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"),
                    after_seq,
                    i64::from(limit),
                )
            }

            async fn audit_chain_head(&self) -> StoreResult<ChainHead> {
                let heads: Vec<ChainHeadRow> =
                    sqlx::query_as("SELECT seq, hash, anchor_seq, anchor_hash FROM audit_chain WHERE id = 1")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(decode_error("audit_chain"))?;
                let head = one_row(heads, "audit_chain")?;
                let mut head = ChainHead::from(head);
                let unchained: Vec<ChainedRecord> = select_all!(
                    &self.pool,
                    ChainedRow,
                    "audit_log",
                    concat!(
                        "SELECT ",
                        chained_columns!(),
                        " FROM audit_log WHERE seq IS NULL OR hash IS NULL \
                          OR seq <= (SELECT anchor_seq FROM audit_chain WHERE id = 1) ORDER BY id LIMIT 1"
                    ),
                )?;
                head.unchained = unchained.into_iter().next();
                Ok(head)
            }

            /// Deletes a prefix of the chain, never a record in the middle:
            /// everything before the first record at or after `before`.
            async fn prune_audit(&self, before: i64) -> StoreResult<u64> {
                let mut tx = engine!($engine,
                    sqlite: { self.pool.begin_with("BEGIN IMMEDIATE").await? }
                    postgres: { self.pool.begin().await? }
                );
                let heads: Vec<(i64, i64)> =
                    sqlx::query_as("UPDATE audit_chain SET seq = seq WHERE id = 1 RETURNING seq, anchor_seq")
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(decode_error("audit_chain"))?;
                let (head, anchor) =
                    one_row(heads, "audit_chain")?;
                let keep_from: Vec<Option<i64>> =
                    sqlx::query_scalar("SELECT min(seq) FROM audit_log WHERE seq > $1 AND at >= $2")
                        .bind(anchor)
                        .bind(before)
                        .fetch_all(&mut *tx)
                        .await?;
                let keep_from = keep_from.into_iter().next().flatten();
                let last_gone = keep_from.unwrap_or(head + 1) - 1;
                if last_gone <= anchor {
                    return Ok(0);
                }
                let hashes: Vec<String> = sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = $1")
                    .bind(last_gone)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(decode_error("audit_log"))?;
                let hash = hashes.into_iter().next().ok_or_else(|| StoreError::Corrupt(format!("audit_log: no record {last_gone}")))?;
                let gone = sqlx::query("DELETE FROM audit_log WHERE seq <= $1")
                    .bind(last_gone)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query("UPDATE audit_chain SET anchor_seq = $1, anchor_hash = $2 WHERE id = 1")
                    .bind(last_gone)
                    .bind(&hash)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(gone)
            }
        }
    };
}

/// The `$row` (a `sqlx::FromRow` struct of `rows`) that `$sql` selects
/// with `$bind`s, if any, converted into its domain value.
macro_rules! select_optional {
    ($pool:expr, $row:ty, $table:literal, $sql:expr $(, $bind:expr)* $(,)?) => {
        sqlx::query_as::<_, $row>($sql)
            $(.bind($bind))*
            .fetch_optional($pool)
            .await
            .map_err(decode_error($table))?
            .map(TryFrom::try_from)
            .transpose()
    };
}

/// Seal the audit records written before the chain existed into it, in
/// the order they were written, once (`audit_chain.legacy_sealed`): a row
/// without a place in the chain found later was inserted by something other
/// than Wardkey, and `verify` reports it instead of sealing it.
macro_rules! seal_legacy_audit {
    ($pool:expr, $begin:literal) => {{
        // Read first: once sealed (every open but the first), no write.
        let sealed: Vec<i64> =
            sqlx::query_scalar("SELECT legacy_sealed FROM audit_chain WHERE id = 1").fetch_all($pool).await?;
        if sealed.first() != Some(&1) {
            let mut tx = $pool.begin_with($begin).await?;
            let heads: Vec<(i64, String)> = sqlx::query_as(
                "UPDATE audit_chain SET legacy_sealed = 1 WHERE id = 1 AND legacy_sealed = 0 RETURNING seq, hash",
            )
            .fetch_all(&mut *tx)
            .await?;
            if let Some((mut seq, mut prev)) = heads.into_iter().next() {
                let rows: Vec<ChainedRecord> = select_all!(
                    &mut *tx,
                    ChainedRow,
                    "audit_log",
                    concat!("SELECT ", chained_columns!(), " FROM audit_log WHERE seq IS NULL ORDER BY id"),
                )?;
                for row in &rows {
                    seq += 1;
                    let hash = record_hash(&prev, seq, &row.event, &row.detail_text);
                    sqlx::query("UPDATE audit_log SET seq = $1, prev_hash = $2, hash = $3 WHERE id = $4")
                        .bind(seq)
                        .bind(&prev)
                        .bind(&hash)
                        .bind(row.row_id)
                        .execute(&mut *tx)
                        .await?;
                    prev = hash;
                }
                sqlx::query("UPDATE audit_chain SET seq = $1, hash = $2 WHERE id = 1")
                    .bind(seq)
                    .bind(&prev)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
    }};
}

/// Every `$row` that `$sql` selects with `$bind`s, converted.
macro_rules! select_all {
    ($pool:expr, $row:ty, $table:literal, $sql:expr $(, $bind:expr)* $(,)?) => {
        convert_all(
            sqlx::query_as::<_, $row>($sql)
                $(.bind($bind))*
                .fetch_all($pool)
                .await
                .map_err(decode_error($table))?,
        )
    };
}

/// The `$row` of `$table` whose `$column` is `$key`, converted; with
/// `text`, a key the engine cannot store (`names_nothing`) answers `None`
/// without asking.
macro_rules! find_by {
    ($self:ident, $row:ty, $table:literal, $columns:ident, $column:literal = text $key:expr) => {{
        if Self::names_nothing($key) {
            return Ok(None);
        }
        find_by!($self, $row, $table, $columns, $column = $key)
    }};
    ($self:ident, $row:ty, $table:literal, $columns:ident, $column:literal = $key:expr) => {
        select_optional!(
            &$self.pool,
            $row,
            $table,
            concat!("SELECT ", $columns!(), " FROM ", $table, " WHERE ", $column, " = $1"),
            $key
        )
    };
}

/// Before the migrations: refuse, naming them, two usernames that differ
/// only in case, which migration 0010's case-insensitive unique index
/// would otherwise reject with a bare constraint error. `$users_exist` is
/// the engine's query for whether the `users` table exists yet.
macro_rules! check_username_case {
    ($pool:expr, $users_exist:literal) => {{
        let exists: i64 = sqlx::query_scalar($users_exist).fetch_one($pool).await?;
        if exists > 0 {
            let clash: Option<(String, String)> = sqlx::query_as(
                "SELECT min(username), max(username) FROM users GROUP BY lower(username) HAVING count(*) > 1 \
                 ORDER BY 1 LIMIT 1",
            )
            .fetch_optional($pool)
            .await?;
            if let Some((a, b)) = clash {
                return Err(StoreError::UsernameCaseClash(a, b));
            }
        }
    }};
}

/// The `users` columns a directory sync writes, in the order
/// [`bind_directory_record!`] binds them (`$1` to `$9`).
macro_rules! directory_columns {
    () => {
        "id, username, name, email, roles, disabled, source, external_id, employee_number"
    };
}

/// Bind user `$id` from `$source` as `$record` describes them to `$query`,
/// as `$1` to `$9` in the order of [`directory_columns!`]: one order for the
/// sync's insert and update alike.
macro_rules! bind_directory_record {
    ($query:expr, $id:expr, $source:expr, $record:expr) => {
        $query
            .bind($id)
            .bind(Self::storable_text(&$record.username))
            .bind($record.name.as_deref().map(Self::storable_text))
            .bind($record.email.as_deref().map(Self::storable_text))
            .bind(to_json("roles", &$record.roles)?)
            .bind($record.disabled)
            .bind($source)
            .bind(Self::storable_text(&$record.external_id))
            .bind($record.employee_number.as_deref().map(Self::storable_text))
    };
}

/// In transaction `$tx`: set each `(user id, role codes)` of `$roles`.
macro_rules! set_roles {
    ($tx:ident, $roles:expr) => {
        for (user_id, codes) in $roles {
            sqlx::query("UPDATE users SET roles = $2 WHERE id = $1")
                .bind(user_id)
                .bind(to_json("roles", codes)?)
                .execute(&mut *$tx)
                .await?;
        }
    };
}

/// In transaction `$tx`: ask the servers to end the sessions of user `$id`
/// if the user is enabled (about to be disabled).
macro_rules! revoke_if_enabled {
    ($tx:ident, $id:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO session_revocations (user_id, requested_at) \
             SELECT id, $2 FROM users WHERE id = $1 AND disabled = FALSE",
        )
        .bind($id)
        .bind($now)
        .execute(&mut *$tx)
        .await?
    };
}

/// Run the statement `$sql` with `$bind`s: `Err($not_found())` if it
/// changed no row.
macro_rules! change_one {
    ($self:ident, $not_found:expr, $sql:expr $(, $bind:expr)* $(,)?) => {
        match sqlx::query($sql)$(.bind($bind))*.execute(&$self.pool).await {
            Ok(done) if done.rows_affected() == 0 => Err($not_found()),
            Ok(_) => Ok(()),
            Err(e) => Err(StoreError::from(e)),
        }
    };
}

/// Every `$row` of `$table` in `$order`, converted.
macro_rules! list_all {
    ($self:ident, $row:ty, $table:literal, $columns:ident, $order:literal) => {
        select_all!(&$self.pool, $row, $table, concat!("SELECT ", $columns!(), " FROM ", $table, " ORDER BY ", $order))
    };
}

/// `UPDATE badges SET pin_attempts = …`: one check under way fewer, never
/// below zero (SQLite's two-argument `MAX` is PostgreSQL's `GREATEST`, so
/// neither).
macro_rules! release_pin_attempt {
    () => {
        "CASE WHEN pin_attempts > 0 THEN pin_attempts - 1 ELSE 0 END"
    };
}

/// The insert of one workstation exactly as given, with its pending
/// enrolment code (digest and expiry), if any.
macro_rules! insert_workstation {
    ($ws:expr, $code_digest:expr, $code_expires_at:expr) => {
        sqlx::query(concat!(
            "INSERT INTO workstations (",
            workstation_columns!(),
            ", enrol_code_digest, enrol_code_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&$ws.id)
        .bind(&$ws.name)
        .bind(&$ws.ward)
        .bind(&$ws.public_key)
        .bind($ws.enabled)
        .bind($ws.created_at)
        .bind($ws.enrolled_at)
        .bind($code_digest)
        .bind($code_expires_at)
    };
}

/// The insert of one signing key exactly as given, for rotation and import.
macro_rules! insert_key {
    ($key:expr) => {
        sqlx::query(concat!("INSERT INTO signing_keys (", key_columns!(), ") VALUES ($1, $2, $3, $4, $5)"))
            .bind(&$key.kid)
            .bind($key.alg.as_str())
            .bind(&$key.pkcs8)
            .bind($key.created_at)
            .bind($key.retired_at)
    };
}

pub(crate) use {
    bind_directory_record, change_one, check_username_case, directory_columns, engine, find_by, impl_store, insert_key,
    insert_workstation, list_all, release_pin_attempt, revoke_if_enabled, seal_legacy_audit, select_all,
    select_optional, set_roles,
};

use crate::StoreError;
use crate::rows::conflict_on_unique;
use wardkey_core::keys::SigningKey;

/// A taken `kid` is `Conflict`.
pub(crate) fn key_conflict(err: sqlx::Error, key: &SigningKey) -> StoreError {
    conflict_on_unique(err, format!("signing key {:?}", key.kid))
}

/// A foreign-key violation becomes `NotFound(not_found())`; anything else is
/// a backend failure.
pub(crate) fn owner_or_backend(err: sqlx::Error, not_found: impl FnOnce() -> StoreError) -> StoreError {
    match err {
        sqlx::Error::Database(ref e) if e.is_foreign_key_violation() => not_found(),
        other => StoreError::Backend(other),
    }
}

/// The one row a statement about a single-row table (or one key) must
/// return; `Corrupt` naming `table` if it returned none.
pub(crate) fn one_row<T>(rows: Vec<T>, table: &str) -> crate::StoreResult<T> {
    rows.into_iter().next().ok_or_else(|| StoreError::Corrupt(format!("{table}: no row")))
}

/// Imports shared by every expansion of [`impl_store!`].
pub(crate) mod prelude {
    pub(crate) use super::{
        bind_directory_record, change_one, check_username_case, directory_columns, engine, find_by, insert_key,
        insert_workstation, key_conflict, list_all, one_row, owner_or_backend, release_pin_attempt, revoke_if_enabled,
        seal_legacy_audit, select_all, select_optional, set_roles,
    };
    pub(crate) use crate::audit_chain::{ChainHead, ChainedRecord, record_hash};
    pub(crate) use crate::rows::{
        AuditRow, BadgeRow, ChainHeadRow, ChainedRow, ClientRow, KeyRow, LogoutRow, MAX_LOGOUT_ERROR_CHARS, UserRow,
        WebauthnRow, WorkstationRow, audit_columns, badge_columns, chained_columns, checked_count, client_columns,
        conflict_on_unique, convert_all, decode_error, key_columns, logout_columns, owner_or_conflict, storable_client,
        to_json, truncate_chars, user_columns, webauthn_columns, workstation_columns,
    };
    pub(crate) use crate::{
        CredentialKind, LogoutNotice, NewLogoutNotice, ScimGroup, StoreError, StoreResult, UserChange,
        WebauthnCredential,
    };
    pub(crate) use wardkey_core::audit::AuditEvent;
    pub(crate) use wardkey_core::badge::Badge;
    pub(crate) use wardkey_core::client::Client;
    pub(crate) use wardkey_core::keys::SigningKey;
    pub(crate) use wardkey_core::secret::random_token;
    pub(crate) use wardkey_core::user::{NewUser, User};
    pub(crate) use wardkey_core::workstation::Workstation;
}
