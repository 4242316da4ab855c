//! `wardkey client …`: the relying parties (EPR apps) and how they authenticate.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::json;
use wardkey_core::client::{self, Client, ClientAuth, GrantType};
use wardkey_core::clock::{Clock, SystemClock};
use wardkey_core::keys::SigningAlg;
use wardkey_core::secret::{digest, new_secret};
use wardkey_idp::Settings;

use clap::{Args, Subcommand};

use super::shared::{audit, explain, open_store, print};

/// `wardkey client …`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints its generated secret once.
    // Boxed: the arguments dwarf the other variants (clippy::large_enum_variant).
    Add(Box<ClientAddArgs>),
    /// List clients.
    List,
    /// Remove a client.
    Remove {
        /// The client id.
        client_id: String,
    },
}

/// Arguments of `wardkey client add`.
#[derive(Debug, Args)]
pub struct ClientAddArgs {
    /// The client id.
    pub client_id: String,
    /// Redirect URI, matched exactly (repeatable).
    #[arg(long = "redirect-uri", value_name = "URI")]
    pub redirect_uris: Vec<String>,
    /// A public client (no secret; PKCE only).
    #[arg(long, conflicts_with_all = ["jwks_uri", "jwks_file"])]
    pub public: bool,
    /// Where RP-initiated logout may return (repeatable).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    pub post_logout_redirect_uris: Vec<String>,
    /// OIDC Back-Channel Logout endpoint.
    #[arg(long, value_name = "URI")]
    pub backchannel_logout_uri: Option<String>,
    /// JWKS URL for private_key_jwt.
    #[arg(long, value_name = "URI", conflicts_with = "jwks_file")]
    pub jwks_uri: Option<String>,
    /// JWKS file for private_key_jwt.
    #[arg(long, value_name = "FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Grant type (repeatable) [default: authorization_code and refresh_token]
    #[arg(long = "grant-type", value_name = "GRANT")]
    pub grant_types: Vec<String>,
    /// Browser handoff target.
    #[arg(long, value_name = "URI")]
    pub start_url: Option<String>,
    /// ID token signing algorithm: ES256, RS256 or EdDSA.
    #[arg(long, default_value = "ES256", value_name = "ALG")]
    pub id_token_alg: String,
    /// The weakest acr the app accepts (e.g. urn:wardkey:acr:passkey); weaker
    /// sessions step up first [default: any]
    #[arg(long, value_name = "ACR")]
    pub min_acr: Option<String>,
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
pub async fn run(settings: &Settings, cmd: ClientCommand, json_out: bool) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Add(args) => {
            let (client, secret) = build_client(*args)?;
            super::shared::admin(settings)
                .await?
                .add_client(&super::shared::operator(), &client, auth_method(&client))
                .await?;
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
