//! The service desk's and IT's operations, with their rules, for the CLI
//! and the console alike: both call these, so a PIN the CLI refuses is
//! refused in the console too, and every change is audited in one way with
//! the operator's name (`cli:sam` from the command line, `console:sam`
//! from the console).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wardkey_core::audit::AuditEvent;
use wardkey_core::badge::{Badge, MAX_PIN_FAILURES};
use wardkey_core::client::Client;
use wardkey_core::clock::SharedClock;
use wardkey_core::secret::{digest, new_secret};
use wardkey_core::user::User;
use wardkey_core::workstation::{Workstation, enrolment_code, normalise_code, validate_label};
use wardkey_store::{CredentialKind, Store, StoreError, WebauthnCredential};

use crate::config::Settings;

/// Why an operation was not done, in words for the operator.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The named thing does not exist.
    #[error("{kind} {name:?} does not exist")]
    NotFound {
        /// `user`, `workstation`, `client`, `key`, `badge`.
        kind: &'static str,
        /// Its name as given.
        name: String,
    },
    /// A unique name is taken.
    #[error("{kind} {name:?} already exists")]
    Exists {
        /// What kind of thing.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A rule refuses it; the message says which and what would do.
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Result alias of the admin service.
pub type AdminResult<T> = Result<T, AdminError>;

/// What the console shows of a user.
#[derive(Debug, Clone)]
pub struct UserDetail {
    /// The user.
    pub user: User,
    /// Their badges (digests only).
    pub badges: Vec<Badge>,
    /// Their passkeys and security keys.
    pub keys: Vec<WebauthnCredential>,
    /// Locked out of password sign-in (too many wrong passwords).
    pub password_locked: bool,
    /// A badge locked by wrong PINs.
    pub badge_locked: bool,
}

impl UserDetail {
    /// Locked out one way or another: what "unlock" clears.
    pub fn locked(&self) -> bool {
        self.password_locked || self.badge_locked
    }
}

/// A new workstation and its one-time enrolment code (`Debug` hides it).
#[derive(Clone)]
pub struct Enrolment {
    /// The workstation, not yet enrolled.
    pub workstation: Workstation,
    /// The code the agent enrols with, once, before `expires_at`.
    pub code: String,
    /// When the code stops working (Unix seconds).
    pub expires_at: i64,
}

/// A one-time invite link (`Debug` hides it).
#[derive(Clone)]
pub struct Invite {
    /// The link.
    pub url: String,
    /// When it stops working (Unix seconds).
    pub expires_at: i64,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolment").field("workstation", &self.workstation.name).field("code", &"…").finish()
    }
}

impl std::fmt::Debug for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invite").field("url", &"…").field("expires_at", &self.expires_at).finish()
    }
}

/// The admin operations. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    store: Arc<dyn Store>,
    clock: SharedClock,
    settings: Arc<Settings>,
}

impl Admin {
    /// Operations on `store` under `settings`.
    pub fn new(store: Arc<dyn Store>, clock: SharedClock, settings: Arc<Settings>) -> Self {
        Self { store, clock, settings }
    }

    async fn audit(&self, actor: &str, event: &str, subject: &str, detail: serde_json::Value) -> AdminResult<()> {
        let record = AuditEvent {
            at: self.clock.now(),
            event: event.into(),
            actor: actor.into(),
            subject: subject.into(),
            detail,
        };
        Ok(self.store.append_audit(&record).await?)
    }

    /// The user called `username`.
    pub async fn user(&self, username: &str) -> AdminResult<User> {
        self.store
            .user_by_username(username)
            .await?
            .ok_or_else(|| AdminError::NotFound { kind: "user", name: username.to_string() })
    }

    /// Users whose username, name or email contains `query` (any case),
    /// by username, at most `limit`, each with whether they are locked out
    /// (wrong passwords, or a badge locked by wrong PINs): what the service
    /// desk looks for first.
    pub async fn search_users(&self, query: &str, limit: usize) -> AdminResult<Vec<(User, bool)>> {
        let badge_locked: std::collections::HashSet<String> = self
            .store
            .list_badges()
            .await?
            .into_iter()
            .filter(|b| b.failed_pins >= MAX_PIN_FAILURES)
            .map(|b| b.user_id)
            .collect();
        let query = query.trim().to_lowercase();
        let mut users: Vec<User> = self
            .store
            .list_users()
            .await?
            .into_iter()
            .filter(|u| {
                query.is_empty()
                    || [Some(&u.username), u.name.as_ref(), u.email.as_ref()]
                        .into_iter()
                        .flatten()
                        .any(|field| field.to_lowercase().contains(&query))
            })
            .collect();
        users.sort_by(|a, b| a.username.cmp(&b.username));
        users.truncate(limit);
        let lock_after = self.settings.password.lock_after;
        Ok(users
            .into_iter()
            .map(|u| {
                let locked = u.failed_logins >= lock_after || badge_locked.contains(&u.id);
                (u, locked)
            })
            .collect())
    }

    /// Everything the console shows of `username`.
    pub async fn user_detail(&self, username: &str) -> AdminResult<UserDetail> {
        let user = self.user(username).await?;
        let badges: Vec<Badge> = self.store.list_badges().await?.into_iter().filter(|b| b.user_id == user.id).collect();
        let keys = self.store.webauthn_credentials(&user.id).await?;
        let password_locked = user.failed_logins >= self.settings.password.lock_after;
        let badge_locked = badges.iter().any(|b| b.failed_pins >= MAX_PIN_FAILURES);
        Ok(UserDetail { user, badges, keys, password_locked, badge_locked })
    }

    /// Clear wrong-password and wrong-PIN counts: the account and every
    /// badge work again.
    pub async fn unlock(&self, actor: &str, username: &str) -> AdminResult<()> {
        let user = self.user(username).await?;
        self.store.reset_login_failures(&user.id).await?;
        self.store.reset_pin_failures(&user.id).await?;
        self.audit(actor, "user.unlock", username, json!({})).await
    }

    /// Disable (ending every session at once, and held against directory
    /// syncs) or enable `username`.
    pub async fn set_disabled(&self, actor: &str, username: &str, disabled: bool) -> AdminResult<()> {
        self.store.set_user_disabled(username, disabled, self.clock.now()).await.map_err(|e| match e {
            StoreError::NotFound(_) => AdminError::NotFound { kind: "user", name: username.to_string() },
            other => other.into(),
        })?;
        let event = if disabled { "user.disable" } else { "user.enable" };
        self.audit(actor, event, username, json!({})).await
    }

    /// Set `username`'s PIN (the tap PIN rules: length, digits, not
    /// guessable) and clear their badges' wrong-PIN counts.
    pub async fn set_pin(&self, actor: &str, username: &str, pin: &str) -> AdminResult<()> {
        wardkey_core::badge::validate_pin(pin, self.settings.tap.pin_min_length)
            .map_err(|e| AdminError::Refused(e.to_string()))?;
        // argon2 takes tens of milliseconds: off the async workers.
        let (argon2, owned) = (self.settings.password.argon2(), pin.to_string());
        let hash = tokio::task::spawn_blocking(move || wardkey_core::password::hash(&argon2, &owned))
            .await
            .map_err(|e| AdminError::Refused(format!("the PIN could not be hashed: {e}")))?
            .map_err(|e| AdminError::Refused(format!("the PIN could not be hashed: {e}")))?;
        let user = self.user(username).await?;
        self.store.set_credential(&user.id, CredentialKind::Pin, &hash, self.clock.now()).await?;
        self.store.reset_pin_failures(&user.id).await?;
        self.audit(actor, "user.set_pin", username, json!({})).await
    }

    /// A one-time link with which `username` adds a passkey or security key,
    /// valid for `valid_for`. The token is never logged or audited.
    pub async fn invite(&self, actor: &str, username: &str, valid_for: Duration) -> AdminResult<Invite> {
        let user = self.user(username).await?;
        if user.disabled {
            return Err(AdminError::Refused(format!("{username} is disabled: enable them first")));
        }
        let now = self.clock.now();
        let expires_at = now.saturating_add(i64::try_from(valid_for.as_secs()).unwrap_or(i64::MAX));
        let token = new_secret();
        self.store.create_invite(&digest(&token), &user.id, now, expires_at).await?;
        self.audit(actor, "user.invite", username, json!({"sub": user.id, "expires_at": expires_at})).await?;
        Ok(Invite { url: format!("{}/account/invite/{token}", self.settings.issuer()), expires_at })
    }

    /// Remove `username`'s key whose credential id is `id`.
    pub async fn remove_key(&self, actor: &str, username: &str, id: &[u8], shown_id: &str) -> AdminResult<()> {
        let user = self.user(username).await?;
        let key = self.store.webauthn_credentials(&user.id).await?.into_iter().find(|k| k.id == id);
        let key = key.ok_or_else(|| AdminError::NotFound { kind: "key", name: shown_id.to_string() })?;
        self.store.remove_webauthn_credential(&user.id, id).await?;
        self.audit(actor, "webauthn.removed", username, json!({"credential": shown_id, "name": key.name})).await
    }

    /// Revoke every badge of `username` (a lost or stolen badge).
    pub async fn revoke_badges(&self, actor: &str, username: &str) -> AdminResult<u64> {
        let user = self.user(username).await?;
        let revoked = self.store.revoke_user_badges(&user.id).await?;
        self.audit(actor, "badge.revoke", username, json!({"revoked": revoked})).await?;
        Ok(revoked)
    }

    /// End every session of `username` on every server, within a second
    /// (applications are told by back-channel logout).
    pub async fn end_sessions(&self, actor: &str, username: &str) -> AdminResult<()> {
        let user = self.user(username).await?;
        self.store.request_session_revocation(&user.id, self.clock.now()).await?;
        self.audit(actor, "session.revoke", username, json!({})).await
    }

    /// Create workstation `name` on `ward` and its one-time enrolment code.
    pub async fn enrol_workstation(&self, actor: &str, name: &str, ward: &str) -> AdminResult<Enrolment> {
        validate_label("name", name).map_err(|e| AdminError::Refused(e.to_string()))?;
        validate_label("ward", ward).map_err(|e| AdminError::Refused(e.to_string()))?;
        let now = self.clock.now();
        let code = enrolment_code();
        let expires_at = now + i64::try_from(self.settings.tap.enrolment_code_ttl.as_secs()).unwrap_or(i64::MAX);
        let workstation = Workstation {
            id: wardkey_core::secret::random_token(12),
            name: name.to_string(),
            ward: ward.to_string(),
            public_key: None,
            enabled: true,
            created_at: now,
            enrolled_at: None,
        };
        let code_digest = digest(&normalise_code(&code));
        self.store.create_workstation(&workstation, &code_digest, expires_at).await.map_err(|e| match e {
            StoreError::Conflict(_) => AdminError::Exists { kind: "workstation", name: name.to_string() },
            other => other.into(),
        })?;
        self.audit(actor, "workstation.create", name, json!({"ward": ward, "workstation_id": workstation.id})).await?;
        Ok(Enrolment { workstation, code, expires_at })
    }

    /// Enable or disable workstation `name` (a disabled one's taps are
    /// refused at once).
    pub async fn set_workstation_enabled(&self, actor: &str, name: &str, enabled: bool) -> AdminResult<()> {
        self.store.set_workstation_enabled(name, enabled).await.map_err(|e| match e {
            StoreError::NotFound(_) => AdminError::NotFound { kind: "workstation", name: name.to_string() },
            other => other.into(),
        })?;
        let event = if enabled { "workstation.enable" } else { "workstation.disable" };
        self.audit(actor, event, name, json!({})).await
    }

    /// Register `client` (its secret, if any, already digested by the
    /// caller, who shows it once).
    pub async fn add_client(&self, actor: &str, client: &Client, auth: &str) -> AdminResult<()> {
        self.store.create_client(client).await.map_err(|e| match e {
            StoreError::Conflict(_) => AdminError::Exists { kind: "client", name: client.client_id.clone() },
            other => other.into(),
        })?;
        self.audit(actor, "client.add", &client.client_id, json!({"auth": auth, "min_acr": client.min_acr})).await
    }
}
