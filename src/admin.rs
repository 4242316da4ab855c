//! Admin commands. They work on the store directly (the server need not be
//! running) and record every change in the audit log as `admin-cli`.

use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use wardkey_core::audit::AuditEvent;
use wardkey_core::badge::Badge;
use wardkey_core::client::{self, Client, ClientAuth, GrantType};
use wardkey_core::clock::{Clock, SystemClock};
use wardkey_core::keys::SigningAlg;
use wardkey_core::password;
use wardkey_core::secret::{digest, new_secret};
use wardkey_core::user::{self, NewUser};
use wardkey_core::workstation::{Workstation, enrolment_code, validate_label};
use wardkey_idp::Settings;
use wardkey_store::{CredentialKind, Store, StoreError};

use crate::cli::{
    BadgeCommand, ClientAddArgs, ClientCommand, KeysCommand, SessionCommand, StoreCommand, UserCommand,
    WorkstationCommand,
};

async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    wardkey_store::open(&settings.store.url)
        .await
        .with_context(|| format!("opening the store at {}", wardkey_idp::config::redact_url(&settings.store.url)))
}

/// Read one secret line from stdin, without its line ending.
fn read_secret(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).with_context(|| format!("reading the {what} from stdin"))?;
    let secret = line.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        bail!("no {what} on stdin: pipe it in, for example `printf '%s\\n' \"$SECRET\" | wardkey …`");
    }
    Ok(secret)
}

async fn audit(store: &dyn Store, event: &str, subject: &str, detail: serde_json::Value) -> anyhow::Result<()> {
    let record = AuditEvent {
        at: SystemClock.now(),
        event: event.into(),
        actor: "admin-cli".into(),
        subject: subject.into(),
        detail,
    };
    store.append_audit(&record).await.context("writing the audit log")
}

fn print(json_out: bool, value: serde_json::Value, human: impl FnOnce() -> String) {
    if json_out {
        println!("{value}");
    } else {
        println!("{}", human());
    }
}

/// Turn "not found"/"already exists" into sentences that name the thing.
fn explain(e: StoreError, kind: &str, name: &str) -> anyhow::Error {
    match e {
        StoreError::NotFound(_) => anyhow!("{kind} {name:?} does not exist"),
        StoreError::Conflict(_) => anyhow!("{kind} {name:?} already exists"),
        other => anyhow::Error::new(other),
    }
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
fn show_time(secs: i64) -> String {
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
pub async fn user(settings: &Settings, cmd: UserCommand, json_out: bool) -> anyhow::Result<()> {
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
                password::validate_password(&pw)?;
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
            print(json_out, json!({"username": created.username, "sub": created.id}), || {
                format!("added user {} (sub {})", created.username, created.id)
            });
        }
        UserCommand::List => {
            let store = open_store(settings).await?;
            let users = store.list_users().await?;
            let rows: Vec<_> = users
                .iter()
                .map(|u| {
                    json!({"username": u.username, "sub": u.id, "name": u.name, "email": u.email, "roles": u.roles,
                        "disabled": u.disabled, "failed_logins": u.failed_logins})
                })
                .collect();
            print(json_out, json!(rows), || {
                users
                    .iter()
                    .map(|u| {
                        let status = if u.disabled { "disabled" } else { "active" };
                        format!("{}\t{}\t{}\t{status}", u.username, u.name.as_deref().unwrap_or("-"), u.id)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        UserCommand::Disable { username } => set_disabled(settings, &username, true, json_out).await?,
        UserCommand::Enable { username } => set_disabled(settings, &username, false, json_out).await?,
        UserCommand::Unlock { username } => {
            let store = open_store(settings).await?;
            let user =
                store.user_by_username(&username).await?.ok_or_else(|| anyhow!("user {username:?} does not exist"))?;
            store.reset_login_failures(&user.id).await?;
            audit(store.as_ref(), "user.unlock", &username, json!({})).await?;
            print(json_out, json!({"username": username, "unlocked": true}), || format!("unlocked {username}"));
        }
        UserCommand::SetPin { username, .. } => {
            let pin = read_secret("PIN")?;
            wardkey_core::badge::validate_pin(&pin, settings.tap.pin_min_length)?;
            let hash = password::hash(&settings.password.argon2(), &pin)?;
            let store = open_store(settings).await?;
            let user = find_user(store.as_ref(), &username).await?;
            store.set_credential(&user.id, CredentialKind::Pin, &hash, SystemClock.now()).await?;
            store.reset_pin_failures(&user.id).await?;
            audit(store.as_ref(), "user.set_pin", &username, json!({})).await?;
            print(json_out, json!({"username": username, "pin_set": true}), || format!("PIN set for {username}"));
        }
        UserCommand::SetPassword { username, .. } => {
            let pw = read_secret("password")?;
            password::validate_password(&pw)?;
            let hash = password::hash(&settings.password.argon2(), &pw)?;
            let store = open_store(settings).await?;
            let user =
                store.user_by_username(&username).await?.ok_or_else(|| anyhow!("user {username:?} does not exist"))?;
            store.set_credential(&user.id, CredentialKind::Password, &hash, SystemClock.now()).await?;
            store.reset_login_failures(&user.id).await?;
            audit(store.as_ref(), "user.set_password", &username, json!({})).await?;
            print(json_out, json!({"username": username, "password_set": true}), || {
                format!("password set for {username}")
            });
        }
        UserCommand::Invite { username, valid_for } => {
            let valid_for = invite_validity(&valid_for)?;
            let store = open_store(settings).await?;
            let user = find_user(store.as_ref(), &username).await?;
            if user.disabled {
                bail!("user {username:?} is disabled: enable them first with `wardkey user enable {username}`");
            }
            let now = SystemClock.now();
            let expires_at = now.saturating_add(valid_for.as_secs() as i64);
            // Only the digest is stored and nothing but the link carries the
            // token: it is not logged or audited, so the link works only for
            // whoever it is given to.
            let token = new_secret();
            store.create_invite(&digest(&token), &user.id, now, expires_at).await.map_err(|e| match e {
                StoreError::NotFound(_) => anyhow!("user {username:?} does not exist"),
                other => anyhow::Error::new(other),
            })?;
            audit(store.as_ref(), "user.invite", &username, json!({"sub": user.id, "expires_at": expires_at})).await?;
            let url = format!("{}/account/invite/{token}", settings.issuer());
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

async fn find_user(store: &dyn Store, username: &str) -> anyhow::Result<wardkey_core::user::User> {
    store.user_by_username(username).await?.ok_or_else(|| anyhow!("user {username:?} does not exist"))
}

async fn set_disabled(settings: &Settings, username: &str, disabled: bool, json_out: bool) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    // Disabling also ends the user's live sessions on every running server.
    store.set_user_disabled(username, disabled, SystemClock.now()).await.map_err(|e| explain(e, "user", username))?;
    let event = if disabled { "user.disable" } else { "user.enable" };
    audit(store.as_ref(), event, username, json!({})).await?;
    print(json_out, json!({"username": username, "disabled": disabled}), || {
        format!("{} {username}", if disabled { "disabled" } else { "enabled" })
    });
    Ok(())
}

/// Build a client from the arguments, checking every rule before anything
/// is written. Returns the client and its secret, if one was generated.
fn build_client(args: ClientAddArgs) -> anyhow::Result<(Client, Option<String>)> {
    client::validate_client_id(&args.client_id)?;
    for uri in &args.redirect_uris {
        client::validate_redirect_uri("redirect-uri", uri)?;
    }
    for uri in &args.post_logout_redirect_uris {
        client::validate_redirect_uri("post-logout-redirect-uri", uri)?;
    }
    for (field, uri) in [
        ("backchannel-logout-uri", &args.backchannel_logout_uri),
        ("jwks-uri", &args.jwks_uri),
        ("start-url", &args.start_url),
    ] {
        if let Some(uri) = uri {
            client::validate_redirect_uri(field, uri)?;
            if !uri.starts_with("https://") && !uri.starts_with("http://") {
                bail!("{field}: {uri:?} must be an http(s) URL");
            }
        }
    }
    let grant_types = if args.grant_types.is_empty() {
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
    } else {
        let mut v = Vec::new();
        for g in &args.grant_types {
            let g = GrantType::parse(g)?;
            if !v.contains(&g) {
                v.push(g);
            }
        }
        v
    };
    if grant_types.contains(&GrantType::AuthorizationCode) && args.redirect_uris.is_empty() {
        bail!("redirect-uri: the authorization_code grant needs at least one --redirect-uri");
    }
    if args.public && grant_types.contains(&GrantType::ClientCredentials) {
        bail!("grant-type: a --public client cannot use client_credentials (it has no credentials)");
    }
    let id_token_alg = SigningAlg::parse(&args.id_token_alg)?;
    if let Some(acr) = &args.min_acr {
        client::validate_min_acr(acr)?;
    }
    let (auth, secret) = if args.public {
        (ClientAuth::None, None)
    } else if let Some(uri) = args.jwks_uri {
        (ClientAuth::JwksUri { uri }, None)
    } else if let Some(path) = args.jwks_file {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        if doc.get("keys").and_then(|k| k.as_array()).is_none_or(|k| k.is_empty()) {
            bail!("jwks-file: {} is not a JWK Set: it needs a non-empty \"keys\" array", path.display());
        }
        (ClientAuth::Jwks { jwks: text }, None)
    } else {
        let secret = new_secret();
        (ClientAuth::Secret { digest: digest(&secret).to_vec() }, Some(secret))
    };
    let client = Client {
        client_id: args.client_id,
        auth,
        redirect_uris: args.redirect_uris,
        post_logout_redirect_uris: args.post_logout_redirect_uris,
        backchannel_logout_uri: args.backchannel_logout_uri,
        grant_types,
        start_url: args.start_url,
        id_token_alg,
        created_at: SystemClock.now(),
        min_acr: args.min_acr,
    };
    Ok((client, secret))
}

fn auth_method(c: &Client) -> &'static str {
    match c.auth {
        ClientAuth::None => "none",
        ClientAuth::Secret { .. } => "client_secret",
        ClientAuth::Jwks { .. } | ClientAuth::JwksUri { .. } => "private_key_jwt",
    }
}

/// `wardkey client …`.
pub async fn client(settings: &Settings, cmd: ClientCommand, json_out: bool) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Add(args) => {
            let (client, secret) = build_client(*args)?;
            let store = open_store(settings).await?;
            store.create_client(&client).await.map_err(|e| explain(e, "client", &client.client_id))?;
            let detail = json!({"auth": auth_method(&client), "min_acr": client.min_acr});
            audit(store.as_ref(), "client.add", &client.client_id, detail).await?;
            print(json_out, json!({"client_id": client.client_id, "client_secret": secret}), || match &secret {
                Some(s) => format!(
                    "client_id: {}\nclient_secret: {s}\nStore this secret now: it is not kept and cannot be shown again.",
                    client.client_id
                ),
                None => format!("client_id: {}", client.client_id),
            });
        }
        ClientCommand::List => {
            let store = open_store(settings).await?;
            let clients = store.list_clients().await?;
            let rows: Vec<_> = clients
                .iter()
                .map(|c| {
                    json!({"client_id": c.client_id, "auth": auth_method(c), "redirect_uris": c.redirect_uris,
                        "grant_types": c.grant_types, "id_token_alg": c.id_token_alg.as_str(), "min_acr": c.min_acr})
                })
                .collect();
            print(json_out, json!(rows), || {
                clients
                    .iter()
                    .map(|c| {
                        let min_acr = c.min_acr.as_deref().unwrap_or("-");
                        format!("{}\t{}\t{min_acr}\t{}", c.client_id, auth_method(c), c.redirect_uris.join(" "))
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ClientCommand::Remove { client_id } => {
            let store = open_store(settings).await?;
            store.remove_client(&client_id).await.map_err(|e| explain(e, "client", &client_id))?;
            audit(store.as_ref(), "client.remove", &client_id, json!({})).await?;
            print(json_out, json!({"client_id": client_id, "removed": true}), || format!("removed client {client_id}"));
        }
    }
    Ok(())
}

/// `wardkey keys …`.
pub async fn keys(settings: &Settings, cmd: KeysCommand, json_out: bool) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Rotate => {
            let store = open_store(settings).await?;
            let now = SystemClock.now();
            let fresh = wardkey_idp::keys::generate_keys(now)?;
            store.rotate_signing_keys(&fresh, now).await?;
            // Keys retired long enough ago that no token they signed is
            // still valid are no longer published.
            let keep = settings.oidc.access_token_ttl.as_secs() as i64 + settings.oidc.clock_skew.as_secs() as i64;
            let purged = store.purge_signing_keys(now - keep).await?;
            let kids: Vec<_> = fresh.iter().map(|k| json!({"kid": k.kid, "alg": k.alg.as_str()})).collect();
            audit(store.as_ref(), "keys.rotate", "signing-keys", json!({"new": kids, "purged": purged})).await?;
            print(json_out, json!({"new_keys": kids, "purged": purged}), || {
                let list = fresh.iter().map(|k| format!("{} {}", k.alg.as_str(), k.kid)).collect::<Vec<_>>().join(", ");
                format!(
                    "new signing keys: {list}\nrunning servers switch to them within oidc.key_reload_interval ({}); retired keys stay published until their tokens expire",
                    humantime_fmt(settings.oidc.key_reload_interval)
                )
            });
        }
    }
    Ok(())
}

/// `wardkey workstation …`.
pub async fn workstation(settings: &Settings, cmd: WorkstationCommand, json_out: bool) -> anyhow::Result<()> {
    // Check arguments before the store is even opened.
    if let WorkstationCommand::Enrol { name, ward } = &cmd {
        validate_label("name", name)?;
        validate_label("ward", ward)?;
    }
    let store = open_store(settings).await?;
    match cmd {
        WorkstationCommand::Enrol { name, ward } => {
            let now = SystemClock.now();
            let code = enrolment_code();
            let expires_at = now + settings.tap.enrolment_code_ttl.as_secs() as i64;
            let ws = Workstation {
                id: wardkey_core::secret::random_token(12),
                name: name.clone(),
                ward: ward.clone(),
                public_key: None,
                enabled: true,
                created_at: now,
                enrolled_at: None,
            };
            let code_digest = digest(&wardkey_idp::tap::normalise_code(&code));
            store
                .create_workstation(&ws, &code_digest, expires_at)
                .await
                .map_err(|e| explain(e, "workstation", &name))?;
            audit(store.as_ref(), "workstation.create", &name, json!({"ward": ward, "workstation_id": ws.id})).await?;
            print(
                json_out,
                json!({"name": name, "ward": ward, "workstation_id": ws.id, "code": code, "expires_at": expires_at}),
                || {
                    format!(
                        "enrolment code for {name} ({ward}): {code}\nvalid for {}s, once. On the workstation run:\n  wardkey-agent enrol --server {} --code {code}",
                        settings.tap.enrolment_code_ttl.as_secs(),
                        settings.issuer()
                    )
                },
            );
        }
        WorkstationCommand::List => {
            let list = store.list_workstations().await?;
            let rows: Vec<_> = list
                .iter()
                .map(|w| {
                    json!({"name": w.name, "ward": w.ward, "workstation_id": w.id, "enabled": w.enabled,
                        "enrolled": w.public_key.is_some()})
                })
                .collect();
            print(json_out, json!(rows), || {
                list.iter()
                    .map(|w| {
                        let state = match (w.enabled, w.public_key.is_some()) {
                            (false, _) => "disabled",
                            (true, false) => "awaiting enrolment",
                            (true, true) => "enrolled",
                        };
                        format!("{}\t{}\t{}\t{state}", w.name, w.ward, w.id)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        WorkstationCommand::Disable { name } => set_workstation(store.as_ref(), &name, false, json_out).await?,
        WorkstationCommand::Enable { name } => set_workstation(store.as_ref(), &name, true, json_out).await?,
    }
    Ok(())
}

async fn set_workstation(store: &dyn Store, name: &str, enabled: bool, json_out: bool) -> anyhow::Result<()> {
    store.set_workstation_enabled(name, enabled).await.map_err(|e| explain(e, "workstation", name))?;
    let event = if enabled { "workstation.enable" } else { "workstation.disable" };
    audit(store, event, name, json!({})).await?;
    print(json_out, json!({"name": name, "enabled": enabled}), || {
        format!("{} {name}", if enabled { "enabled" } else { "disabled" })
    });
    Ok(())
}

async fn badge_key(store: &dyn Store) -> anyhow::Result<Vec<u8>> {
    Ok(store.server_secret(wardkey_idp::app::BADGE_KEY_NAME, new_secret().as_bytes()).await?)
}

/// `wardkey badge …`.
pub async fn badge(settings: &Settings, cmd: BadgeCommand, json_out: bool) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    match cmd {
        BadgeCommand::Enrol { username, .. } => {
            let uid = read_secret("badge UID")?;
            let user = find_user(store.as_ref(), &username).await?;
            let digest = wardkey_core::badge::digest(&badge_key(store.as_ref()).await?, &uid)?;
            let badge = Badge { digest, user_id: user.id.clone(), failed_pins: 0, created_at: SystemClock.now() };
            store.add_badge(&badge).await.map_err(|e| match e {
                StoreError::Conflict(_) => anyhow!("this badge is already enrolled; revoke it first"),
                other => anyhow::Error::new(other),
            })?;
            audit(store.as_ref(), "badge.enrol", &username, json!({})).await?;
            print(json_out, json!({"username": username, "enrolled": true}), || {
                format!("badge enrolled for {username}")
            });
        }
        BadgeCommand::Revoke { username, uid_stdin } => {
            let user = find_user(store.as_ref(), &username).await?;
            let revoked = if uid_stdin {
                let uid = read_secret("badge UID")?;
                let digest = wardkey_core::badge::digest(&badge_key(store.as_ref()).await?, &uid)?;
                match store.badge(&digest).await? {
                    Some(b) if b.user_id == user.id => {
                        store.revoke_badge(&digest).await?;
                        1
                    }
                    _ => bail!("{username:?} has no badge with that UID"),
                }
            } else {
                store.revoke_user_badges(&user.id).await?
            };
            // A revoked badge (lost, stolen, copied) must not leave a PC
            // open: the servers end the user's sessions, which locks every
            // ward PC holding one (their desk channels).
            if revoked > 0 {
                store.request_session_revocation(&user.id, SystemClock.now()).await?;
            }
            audit(store.as_ref(), "badge.revoke", &username, json!({"revoked": revoked})).await?;
            print(json_out, json!({"username": username, "revoked": revoked}), || {
                format!("revoked {revoked} badge(s) of {username}")
            });
        }
    }
    Ok(())
}

/// `wardkey session …`.
pub async fn session(settings: &Settings, cmd: SessionCommand, json_out: bool) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    match cmd {
        SessionCommand::Revoke { username } => {
            let user = find_user(store.as_ref(), &username).await?;
            store.request_session_revocation(&user.id, SystemClock.now()).await?;
            audit(store.as_ref(), "session.revoke", &username, json!({})).await?;
            print(json_out, json!({"username": username, "revocation_requested": true}), || {
                format!(
                    "sessions of {username} end within a second on every running server; apps are notified by back-channel logout"
                )
            });
        }
    }
    Ok(())
}

/// `wardkey store …`.
pub async fn store(cmd: StoreCommand, json_out: bool) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Migrate { from, to } => {
            let (from_shown, to_shown) = (wardkey_idp::config::redact_url(&from), wardkey_idp::config::redact_url(&to));
            if from == to {
                bail!("--from and --to name the same store");
            }
            let source =
                wardkey_store::open(&from).await.with_context(|| format!("opening the source store {from_shown}"))?;
            let target =
                wardkey_store::open(&to).await.with_context(|| format!("opening the target store {to_shown}"))?;
            let counts = migrate(source.as_ref(), target.as_ref()).await.with_context(|| {
                format!(
                    "migrating into {to_shown} stopped part-way; drop and recreate that database before trying again"
                )
            })?;
            audit(target.as_ref(), "store.migrate", &to_shown, json!({"from": from_shown, "moved": counts})).await?;
            print(json_out, json!({"from": from_shown, "to": to_shown, "moved": counts}), || {
                let list = counts
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!("  {k}: {v}")).collect::<Vec<_>>().join("\n"));
                format!("moved from {from_shown} to {to_shown}:\n{}", list.unwrap_or_default())
            });
        }
    }
    Ok(())
}

/// Copy every durable record from `source` into the empty `target`; returns
/// how many of each kind moved. Pending workstation enrolment codes and
/// invites are not moved (only digests exist): issue new ones.
async fn migrate(source: &dyn Store, target: &dyn Store) -> anyhow::Result<serde_json::Value> {
    let report = wardkey_store::migrate::copy(source, target, wardkey_idp::app::BADGE_KEY_NAME).await?;
    Ok(serde_json::to_value(report)?)
}

fn humantime_fmt(d: std::time::Duration) -> String {
    format!("{}s", d.as_secs())
}
