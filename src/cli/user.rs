//! `wardkey user …`: accounts, their password and PIN, keys, invites and unlocking.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Subcommand;
use serde_json::json;
use wardkey_core::clock::{Clock, SystemClock};
use wardkey_core::password;
use wardkey_core::user::{self, NewUser};
use wardkey_idp::Settings;
use wardkey_store::{CredentialKind, StoreError};

use super::shared::{admin, audit, explain, find_user, open_store, operator, print, read_secret};

/// `wardkey user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user.
    Add {
        /// Login name.
        username: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
        /// Role code (repeatable).
        #[arg(long = "role", value_name = "CODE")]
        roles: Vec<String>,
        /// Read the initial password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Import a CSV staff extract (the shape of an ESR export: columns
    /// "Username" and "Employee Number", optionally names, email, roles
    /// separated by ';' and assignment status). Creates users, updates
    /// them on a later import (keyed by employee number), links users made
    /// by hand by username; a terminated or suspended assignment disables.
    /// All or nothing: any bad row stops the import and names the row.
    Import {
        /// The CSV file (UTF-8; "-" for stdin).
        file: std::path::PathBuf,
        /// Show what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove a user for good, with their password, PIN, keys and badges;
    /// their sessions end. The audit log keeps their history. (A user from
    /// a directory comes back with its next sync: disable them there.)
    Remove {
        /// Login name.
        username: String,
    },
    /// Disable a user: no new sign-ins, refreshes or userinfo.
    Disable {
        /// Login name.
        username: String,
    },
    /// Re-enable a disabled user.
    Enable {
        /// Login name.
        username: String,
    },
    /// Clear the failed sign-in counter of a locked-out user.
    Unlock {
        /// Login name.
        username: String,
    },
    /// Set or replace a user's tap PIN from the first line of stdin.
    SetPin {
        /// Login name.
        username: String,
        /// Read the PIN from stdin (required: secrets never go in arguments).
        #[arg(long, required = true)]
        pin_stdin: bool,
    },
    /// Set or replace a user's password from the first line of stdin.
    SetPassword {
        /// Login name.
        username: String,
        /// Read the password from stdin (required: secrets never go in arguments).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Print a one-time link with which a user who has no password yet sets
    /// up their account.
    Invite {
        /// Login name.
        username: String,
        /// How long the link works: 5m to 7d, e.g. 30m, 24h, 3d.
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        valid_for: String,
    },
    /// List a user's passkeys and security keys, or turn a suspended one
    /// back on.
    Keys {
        /// Login name.
        username: String,
        /// Turn this suspended key back on (a key is suspended when its
        /// signature counter goes backwards: check that it is the person's
        /// own and not a copy first). The id as the list shows it.
        #[arg(long, value_name = "ID", allow_hyphen_values = true)]
        enable: Option<String>,
    },
    /// Remove one of a user's passkeys or security keys (a lost or stolen one).
    RemoveKey {
        /// Login name.
        username: String,
        /// The key's id, as `wardkey user keys` shows it (base64url).
        // A base64url id may begin with '-': it is still the id, not an option.
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

/// How long an invite link may work: long enough to reach a clinician on a
/// night shift or over a weekend, short enough that a link forgotten in an
/// inbox does not open the account for weeks.
const INVITE_VALIDITY: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(5 * 60)..=Duration::from_secs(7 * 24 * 3600);

/// Parse `--valid-for` (humantime: `30m`, `24h`, `3d`) and check it is
/// within [`INVITE_VALIDITY`].
fn invite_validity(text: &str) -> anyhow::Result<Duration> {
    let valid_for = humantime::parse_duration(text)
        .map_err(|e| anyhow!("valid-for: {text:?} is not a duration ({e}); give one like 30m, 24h or 3d"))?;
    if !INVITE_VALIDITY.contains(&valid_for) {
        bail!("valid-for: {text:?} is out of range: an invite link works for at least 5m and at most 7d");
    }
    Ok(valid_for)
}

/// A Unix time as RFC 3339 UTC, for people. A value no clock gives (before
/// 1970 or after 9999, from a damaged row) is shown as the bare number
/// rather than failing the listing.
pub(crate) fn show_time(secs: i64) -> String {
    match u64::try_from(secs) {
        Ok(s) if s < 253_402_300_800 => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string()
        }
        _ => secs.to_string(),
    }
}

/// Text someone else chose (a key's label, typed on the account page) made
/// safe for one line of a terminal: control characters are shown escaped,
/// so a label cannot forge lines or columns or send escape sequences, and
/// bidirectional overrides too, so it cannot make itself read differently.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                c.escape_unicode().to_string()
            }
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// A WebAuthn credential id as `wardkey user keys` shows it (base64url,
/// unpadded; padding is tolerated).
fn decode_key_id(id: &str) -> anyhow::Result<Vec<u8>> {
    match URL_SAFE_NO_PAD.decode(id.trim_end_matches('=')) {
        Ok(raw) if !raw.is_empty() => Ok(raw),
        _ => bail!("id: {id:?} is not a key id: copy the base64url id that `wardkey user keys USERNAME` shows"),
    }
}

/// `wardkey user …`.
pub async fn run(settings: &Settings, cmd: UserCommand, json_out: bool) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add { username, name, email, roles, password_stdin } => {
            user::validate_username(&username)?;
            if let Some(e) = &email {
                user::validate_email(e)?;
            }
            // Read and hash before touching the store, so a bad password
            // never leaves a half-made user.
            let hash = if password_stdin {
                let pw = read_secret("password")?;
                password::validate_password(&pw, &username, &*settings.password.blocklist()?)?;
                Some(password::hash(&settings.password.argon2(), &pw)?)
            } else {
                None
            };
            let store = open_store(settings).await?;
            let new = NewUser { username: username.clone(), name, email, roles };
            let created = store
                .create_user(&new, hash.as_deref(), SystemClock.now())
                .await
                .map_err(|e| explain(e, "user", &username))?;
            audit(store.as_ref(), "user.add", &username, json!({"sub": created.id})).await?;
            print(
                json_out,
                json!({"username": created.username, "sub": created.id, "password_set": hash.is_some()}),
                || {
                    let mut text = format!("added user {} (sub {})", created.username, created.id);
                    if hash.is_none() {
                        text.push_str(&format!(
                            "\n{0} has no password yet. Send a one-time link to add a passkey or security key \
                         (`wardkey user invite {0}`), set a password (`wardkey user set-password {0} \
                         --password-stdin`), or let them come from the trust's directory (`wardkey directory sync`).",
                            created.username
                        ));
                    }
                    text
                },
            );
        }
        UserCommand::List => {
            let store = open_store(settings).await?;
            let users = store.list_users().await?;
            let rows: Vec<_> = users
                .iter()
                .map(|u| {
                    json!({"username": u.username, "sub": u.id, "name": u.name, "email": u.email, "roles": u.roles,
                        "disabled": u.disabled, "failed_logins": u.failed_logins, "source": u.source,
                        "employee_number": u.employee_number})
                })
                .collect();
            print(json_out, json!(rows), || {
                users
                    .iter()
                    .map(|u| {
                        let status = if u.disabled { "disabled" } else { "active" };
                        let name = u.name.as_deref().unwrap_or("-");
                        format!("{}\t{name}\t{}\t{status}\t{}", u.username, u.id, u.source)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        UserCommand::Import { file, dry_run } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading the extract from stdin")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
            };
            let records = wardkey_directory::esr::parse(&text)?;
            let store = open_store(settings).await?;
            let r = wardkey_directory::esr::import(
                store.as_ref(),
                records,
                SystemClock.now(),
                dry_run,
                &super::shared::operator(),
            )
            .await?;
            print(json_out, serde_json::to_value(&r)?, || {
                let mut text = format!(
                    "{}{} users in the extract: {} created, {} updated, {} linked, {} disabled, {} unchanged, {} skipped",
                    if r.dry_run { "dry run, nothing written: " } else { "" },
                    r.read,
                    r.created,
                    r.updated,
                    r.linked,
                    r.disabled,
                    r.unchanged,
                    r.skipped
                );
                for user in &r.disabled_users {
                    text.push_str(&format!("\n  disabled: {user}"));
                }
                for why in &r.skipped_entries {
                    text.push_str(&format!("\n  skipped: {why}"));
                }
                text
            });
        }
        UserCommand::Remove { username } => {
            let store = open_store(settings).await?;
            let removed =
                store.remove_user(&username, SystemClock.now()).await.map_err(|e| explain(e, "user", &username))?;
            audit(
                store.as_ref(),
                "user.remove",
                &removed.username,
                json!({"sub": removed.id, "source": removed.source}),
            )
            .await?;
            print(json_out, json!({"username": removed.username, "sub": removed.id, "removed": true}), || {
                let mut text = format!(
                    "removed user {} (sub {}) with their credentials, keys and badges; their sessions end within a second",
                    removed.username, removed.id
                );
                if let Some(source) = removed.ldap_source() {
                    text.push_str(&format!(
                        "\nnote: they come from directory {source:?} and return with its next sync unless they are \
                         disabled or removed there"
                    ));
                }
                text
            });
        }
        UserCommand::Disable { username } => set_disabled(settings, &username, true, json_out).await?,
        UserCommand::Enable { username } => set_disabled(settings, &username, false, json_out).await?,
        UserCommand::Unlock { username } => {
            admin(settings).await?.unlock(&operator(), &username).await?;
            print(json_out, json!({"username": username, "unlocked": true}), || format!("unlocked {username}"));
        }
        UserCommand::SetPin { username, .. } => {
            let pin = read_secret("PIN")?;
            admin(settings).await?.set_pin(&operator(), &username, &pin).await?;
            print(json_out, json!({"username": username, "pin_set": true}), || format!("PIN set for {username}"));
        }
        UserCommand::SetPassword { username, .. } => {
            let pw = read_secret("password")?;
            password::validate_password(&pw, &username, &*settings.password.blocklist()?)?;
            let hash = password::hash(&settings.password.argon2(), &pw)?;
            let store = open_store(settings).await?;
            let user =
                store.user_by_username(&username).await?.ok_or_else(|| anyhow!("user {username:?} does not exist"))?;
            if let Some(source) = user.ldap_source() {
                bail!(
                    "{username}'s password is checked by the directory {source:?}: change it there (a password set \
                     here would never be used)"
                );
            }
            store.set_credential(&user.id, CredentialKind::Password, &hash, SystemClock.now()).await?;
            store.reset_login_failures(&user.id).await?;
            audit(store.as_ref(), "user.set_password", &username, json!({})).await?;
            print(json_out, json!({"username": username, "password_set": true}), || {
                format!("password set for {username}")
            });
        }
        UserCommand::Invite { username, valid_for } => {
            let valid_for = invite_validity(&valid_for)?;
            // Only the digest is stored and nothing but the link carries the
            // token: it is not logged or audited, so the link works only for
            // whoever it is given to.
            let invite =
                admin(settings).await?.invite(&operator(), &username, valid_for).await.map_err(|e| match e {
                    wardkey_idp::admin::AdminError::Refused(_) => anyhow!(
                        "user {username:?} is disabled: enable them first with `wardkey user enable {username}`"
                    ),
                    other => other.into(),
                })?;
            let (url, expires_at) = (invite.url, invite.expires_at);
            print(json_out, json!({"username": username, "url": url, "expires_at": expires_at}), || {
                format!(
                    "invite link for {username}, valid once until {}:\n  {url}\nGive it to {username} in person or over a channel you trust: whoever opens it first sets up the account.",
                    show_time(expires_at)
                )
            });
        }
        UserCommand::Keys { username, enable: Some(id) } => {
            let raw = decode_key_id(&id)?;
            let id = URL_SAFE_NO_PAD.encode(&raw);
            let store = open_store(settings).await?;
            let user = find_user(store.as_ref(), &username).await?;
            let key = store.webauthn_credentials(&user.id).await?.into_iter().find(|k| k.id == raw).ok_or_else(|| {
                anyhow!(
                    "user {username:?} has no passkey or security key with id {id:?}; `wardkey user keys {username}` lists theirs"
                )
            })?;
            if key.suspended_at.is_none() {
                bail!("key {id:?} of {username:?} is not suspended; nothing to do");
            }
            store.set_webauthn_suspended(&user.id, &raw, None).await?;
            audit(store.as_ref(), "webauthn.reenabled", &username, json!({"credential": id, "name": key.name})).await?;
            print(json_out, json!({"username": username, "id": id, "enabled": true}), || {
                format!("key {id} of {username} is turned back on")
            });
        }
        UserCommand::Keys { username, enable: None } => {
            let store = open_store(settings).await?;
            let user = find_user(store.as_ref(), &username).await?;
            let keys = store.webauthn_credentials(&user.id).await?;
            let rows: Vec<_> = keys
                .iter()
                .map(|k| {
                    json!({"id": URL_SAFE_NO_PAD.encode(&k.id), "kind": k.kind.as_str(), "name": k.name,
                        "created_at": k.created_at, "last_used_at": k.last_used_at, "suspended_at": k.suspended_at})
                })
                .collect();
            print(json_out, json!(rows), || {
                if keys.is_empty() {
                    return format!("{username} has no passkeys or security keys");
                }
                keys.iter()
                    .map(|k| {
                        let last_used = k.last_used_at.map_or_else(|| "never used".to_string(), show_time);
                        let suspended = k
                            .suspended_at
                            .map(|at| format!("\tSUSPENDED since {} (possibly copied)", show_time(at)))
                            .unwrap_or_default();
                        format!(
                            "{}\t{}\t{}\t{}\t{last_used}{suspended}",
                            URL_SAFE_NO_PAD.encode(&k.id),
                            k.kind.as_str(),
                            if k.name.is_empty() { "-".to_string() } else { one_line(&k.name) },
                            show_time(k.created_at)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        UserCommand::RemoveKey { username, id } => {
            // Check the id before the store is even opened.
            let raw = decode_key_id(&id)?;
            let id = URL_SAFE_NO_PAD.encode(&raw);
            let no_such_key = || {
                anyhow!(
                    "user {username:?} has no passkey or security key with id {id:?}; `wardkey user keys {username}` lists theirs"
                )
            };
            let store = open_store(settings).await?;
            let user = find_user(store.as_ref(), &username).await?;
            let key = store
                .webauthn_credentials(&user.id)
                .await?
                .into_iter()
                .find(|k| k.id == raw)
                .ok_or_else(no_such_key)?;
            store.remove_webauthn_credential(&user.id, &raw).await.map_err(|e| match e {
                StoreError::NotFound(_) => no_such_key(),
                other => anyhow::Error::new(other),
            })?;
            audit(
                store.as_ref(),
                "webauthn.revoke",
                &username,
                json!({"credential": id, "kind": key.kind.as_str(), "name": key.name}),
            )
            .await?;
            print(json_out, json!({"username": username, "id": id, "removed": true}), || {
                format!(
                    "removed {} \"{}\" of {username}\nsessions it already signed in stay open until they end; `wardkey session revoke {username}` ends them now",
                    key.kind.as_str().replace('_', " "),
                    one_line(&key.name)
                )
            });
        }
    }
    Ok(())
}

async fn set_disabled(settings: &Settings, username: &str, disabled: bool, json_out: bool) -> anyhow::Result<()> {
    // Disabling also ends the user's live sessions on every running server.
    admin(settings).await?.set_disabled(&operator(), username, disabled).await?;
    print(json_out, json!({"username": username, "disabled": disabled}), || {
        format!("{} {username}", if disabled { "disabled" } else { "enabled" })
    });
    Ok(())
}
