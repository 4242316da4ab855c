//! Server configuration: built-in defaults, then `wardkey.toml`, then
//! `WARDKEY_SECTION__KEY` environment variables (and `WARDKEY_SECTION__KEY_FILE`
//! to read a secret from a file). Unknown keys are an error, and every value
//! is checked at start-up so a typo stops the server with a message naming the
//! key instead of surfacing at 07:30 on a ward.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use url::Url;
use wardkey_core::password::Argon2Params;
use wardkey_core::secret::redact_url;
use webauthn_rs::prelude::{AttestationCaList, AttestationCaListBuilder, Uuid};

/// Prefix of configuration environment variables.
const ENV_PREFIX: &str = "WARDKEY_";

/// Every setting of the server. Field docs are repeated for operators in
/// `config/wardkey.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where to listen and how the server is reached.
    pub server: ServerSettings,
    /// The durable directory.
    pub store: StoreSettings,
    /// The session cache.
    pub cache: CacheSettings,
    /// SSO session lifetimes.
    pub session: SessionSettings,
    /// Password hashing and throttling.
    pub password: PasswordSettings,
    /// Token lifetimes and protocol tolerances.
    pub oidc: OidcSettings,
    /// Tap-and-go.
    pub tap: TapSettings,
    /// Per-ward overrides of session policy, keyed by ward name.
    pub wards: BTreeMap<String, WardPolicy>,
    /// Which passkeys and security keys people may add.
    pub webauthn: WebauthnSettings,
    /// Bounds on what anonymous callers can make the server keep.
    pub limits: LimitsSettings,
    /// Logging.
    pub log: LogSettings,
    /// The trust's directories: LDAP / Active Directory sign-in and sync.
    pub directory: wardkey_directory::DirectorySettings,
    /// SCIM 2.0 provisioning (Entra ID and other provisioners).
    pub scim: ScimSettings,
    /// The tamper-evident audit log: retention and a live copy for a SIEM.
    pub audit: AuditSettings,
    /// The console at `/console`.
    pub console: ConsoleSettings,
    /// What the login-time metrics compare against.
    pub metrics: MetricsSettings,
}

/// `[audit]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Delete records older than this (the chain keeps an anchor, so what
    /// is left still verifies). None: keep every record.
    #[serde(with = "humantime_serde")]
    pub retention: Option<Duration>,
    /// A live copy of every record as it is written, for a SIEM:
    /// `file:/var/log/wardkey/audit.jsonl` (JSON lines), `syslog` (the
    /// local `/dev/log`, RFC 5424) or `syslog:HOST:PORT` (RFC 5424 over
    /// UDP). None: the store only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
}

/// `[console]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// A change made in the console needs a sign-in (passkey or security
    /// key) this recent; older sessions may look but must sign in again
    /// to change anything.
    #[serde(with = "humantime_serde")]
    pub fresh_sign_in: Duration,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self { fresh_sign_in: Duration::from_secs(15 * 60) }
    }
}

/// `[metrics]`: the time a login took before Wardkey, per method, which
/// `wardkey_time_saved_seconds_total` subtracts each measured login from.
/// The defaults are the published 105 s a login took before single
/// sign-on (NHS trusts' measurements).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// A badge tap (with or without the PIN).
    #[serde(with = "humantime_serde")]
    pub badge_baseline: Duration,
    /// A username and password.
    #[serde(with = "humantime_serde")]
    pub password_baseline: Duration,
    /// A passkey or security key.
    #[serde(with = "humantime_serde")]
    pub passkey_baseline: Duration,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        let published = Duration::from_secs(105);
        Self { badge_baseline: published, password_baseline: published, passkey_baseline: published }
    }
}

/// `[scim]`: who may provision users over SCIM 2.0 (`/scim/v2`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScimSettings {
    /// Provisioning clients and the SHA-256 of their bearer token (`wardkey
    /// scim token NAME` makes one). None: SCIM is off (every request 401).
    pub tokens: Vec<ScimToken>,
    /// SCIM group display name (any case) → role code released in the
    /// `roles` claim of the group's members. Groups not listed give none.
    pub roles: BTreeMap<String, String>,
}

/// One provisioning client's bearer token, kept as its digest only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimToken {
    /// Who it is, for the audit log (`scim:NAME`).
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
}

/// `[limits]`: how many records needing no credential (pending sign-ins,
/// key sign-in ceremonies, failure counts of unknown usernames) one client
/// address, and all clients together, may create per record lifetime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSettings {
    /// From one address (a shared ward PC signs in often; a NAT or proxy
    /// without `server.trust_forwarded_for` is one address).
    pub per_address: u64,
    /// From everyone: past this the server answers 503 rather than grow.
    pub total: u64,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        Self { per_address: 600, total: 50_000 }
    }
}

/// `[tap]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TapSettings {
    /// Fewest digits in a PIN (NIST SP 800-63B §5.1.1.1: at least 6 for a
    /// rate-limited secret).
    pub pin_min_length: usize,
    /// End the previous clinician's SSO session everywhere when another
    /// clinician taps over them, not just their use of this workstation.
    pub logout_on_switch: bool,
    /// The same badge tapped at workstations on two different wards within
    /// this window raises a cloned-badge alert.
    #[serde(with = "humantime_serde")]
    pub cloned_badge_window: Duration,
    /// How long a workstation enrolment code stays valid.
    #[serde(with = "humantime_serde")]
    pub enrolment_code_ttl: Duration,
    /// How long an agent has to send the PIN after `pin_required`.
    #[serde(with = "humantime_serde")]
    pub pin_entry_ttl: Duration,
    /// Let a clinician enrol their own badge at an enrolled workstation with
    /// their username and password. Off by default; every use is audited.
    pub self_enrolment: bool,
}

impl Default for TapSettings {
    fn default() -> Self {
        Self {
            pin_min_length: 6,
            logout_on_switch: false,
            cloned_badge_window: Duration::from_secs(300),
            enrolment_code_ttl: Duration::from_secs(24 * 3600),
            pin_entry_ttl: Duration::from_secs(120),
            self_enrolment: false,
        }
    }
}

/// `[webauthn]`: what people may register on `/account/keys`. The policy
/// applies when a key is added; keys already registered keep working.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebauthnSettings {
    /// Whether people may add passkeys themselves. A passkey is usually
    /// synced between devices and sent without attestation, so no model
    /// allow-list can vouch for it: a trust that issues its own keys turns
    /// this off.
    pub passkeys: bool,
    /// When not empty, a security key is added only if its attestation
    /// chains to one of these CAs and names one of these models (WebAuthn
    /// L2 §7.1 steps 20-21), and only such a key, when it is not
    /// backup-eligible, reaches the security-key `acr` (AAL3). Empty: any
    /// key can be added, as a passkey (AAL2).
    pub approved_models: Vec<ApprovedModel>,
    /// How recent a sign-in must be to add a key with it (NIST SP 800-63B
    /// §6.1.2.1: binding a new authenticator needs a fresh authentication
    /// at least as strong as it). A service-desk invite also lets a key be
    /// added.
    #[serde(with = "humantime_serde")]
    pub add_key_within: Duration,
}

impl Default for WebauthnSettings {
    fn default() -> Self {
        Self { passkeys: true, approved_models: Vec::new(), add_key_within: Duration::from_secs(300) }
    }
}

/// `[[webauthn.approved_models]]`: one authenticator model a trust issues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovedModel {
    /// PEM file of the CA certificate that signs this model's attestation
    /// certificates (the vendor's root, or the trust's own CA).
    pub ca: PathBuf,
    /// The model's AAGUID (from the vendor, or the FIDO metadata service),
    /// like `2fc0579f-8113-47ea-b116-bb5a8db9202a`.
    pub aaguid: String,
    /// What the model is, for people reading the configuration and the audit
    /// log, e.g. "YubiKey 5 NFC".
    pub description: String,
}

impl WebauthnSettings {
    /// The approved models as webauthn-rs's attestation CA list, reading each
    /// CA file; `None` when no list is configured (any security key). Built
    /// at start-up (checked by [`Settings::validate`], then kept by the
    /// server), so a bad file stops the server there, naming the entry,
    /// instead of refusing every key on a ward later.
    pub fn attestation_ca_list(&self) -> Result<Option<AttestationCaList>, ConfigError> {
        if self.approved_models.is_empty() {
            return Ok(None);
        }
        let mut builder = AttestationCaListBuilder::new();
        for (i, model) in self.approved_models.iter().enumerate() {
            let bad = |message: String| ConfigError::ApprovedModel {
                entry: i + 1,
                description: model.description.clone(),
                message,
            };
            if model.description.trim().is_empty() {
                return Err(bad("give the model a description, like \"YubiKey 5 NFC\"".into()));
            }
            let aaguid = Uuid::parse_str(model.aaguid.trim()).map_err(|_| {
                bad(format!("aaguid {:?} is not an AAGUID like 2fc0579f-8113-47ea-b116-bb5a8db9202a", model.aaguid))
            })?;
            if aaguid.is_nil() {
                return Err(bad("the all-zero AAGUID names no model: keys that send it cannot be told apart".into()));
            }
            let pem = std::fs::read(&model.ca)
                .map_err(|e| bad(format!("cannot read the CA certificate {}: {e}", model.ca.display())))?;
            builder.insert_device_pem(&pem, aaguid, model.description.clone(), BTreeMap::new()).map_err(|e| {
                bad(format!("{} is not a PEM certificate (-----BEGIN CERTIFICATE-----): {e}", model.ca.display()))
            })?;
        }
        Ok(Some(builder.build()))
    }
}

/// `[wards."NAME"]`: a ward's own session policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WardPolicy {
    /// Overrides `session.idle_timeout` for workstations on this ward: an
    /// idle workstation locks after this long.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// Overrides `session.pin_grace` for taps on this ward.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub pin_grace: Option<Duration>,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Socket address to bind; port 0 picks a free port.
    pub listen: String,
    /// The issuer: the URL clients and browsers use to reach the server.
    pub public_url: String,
    /// PEM certificate chain; with `tls_key`, serve HTTPS directly.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// How long a client may take to send a request's headers: a client
    /// that trickles them (slowloris) would otherwise hold a connection,
    /// and its memory, for ever.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long one request may take, body included, before it is answered
    /// 408 and dropped.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Behind a reverse proxy, take the client's address from the last
    /// `X-Forwarded-For` entry (the one the proxy appended) for the
    /// per-address limits of `[limits]`; otherwise every client would look
    /// like the proxy. Only set it when every request comes through the
    /// proxy: a client can write that header itself.
    pub trust_forwarded_for: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            tls_cert: None,
            tls_key: None,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            trust_forwarded_for: false,
        }
    }
}

/// `[store]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `sqlite://PATH` or `postgres://…`. May hold a password: redacted in
    /// `Debug`.
    pub url: String,
    /// How often each node asks the store whether users, badges,
    /// workstations or clients changed: the bound on how long a change made
    /// elsewhere (the CLI, or another node when Redis pub/sub missed it)
    /// takes to apply on this node.
    #[serde(with = "humantime_serde")]
    pub directory_poll: Duration,
    /// Create a new, empty store if there is none. Never read from a file
    /// or the environment: `wardkey serve --init` sets it (and the first
    /// run on the built-in defaults), so a server pointed at the wrong path
    /// or database stops instead of starting with nobody in it.
    #[serde(skip)]
    pub create_if_missing: bool,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://./data/wardkey.db".into(),
            directory_poll: Duration::from_millis(250),
            create_if_missing: false,
        }
    }
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &redact_url(&self.url))
            .field("directory_poll", &self.directory_poll)
            .field("create_if_missing", &self.create_if_missing)
            .finish()
    }
}

/// `[cache]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// `memory://`, `redis://…` or `rediss://…`.
    pub url: String,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { url: "memory://".into() }
    }
}

impl std::fmt::Debug for CacheSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheSettings").field("url", &redact_url(&self.url)).finish()
    }
}

/// `[session]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// An SSO session unused for this long ends.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// No SSO session outlives this, used or not (a shift plus handover).
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// How long after a PIN or password check a badge tap alone resumes the
    /// session.
    #[serde(with = "humantime_serde")]
    pub pin_grace: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(2 * 3600),
            max_lifetime: Duration::from_secs(13 * 3600),
            pin_grace: Duration::from_secs(4 * 3600),
        }
    }
}

/// `[password]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordSettings {
    /// argon2id memory cost in KiB (OWASP: 19456).
    pub m_cost: u32,
    /// argon2id iterations (OWASP: 2).
    pub t_cost: u32,
    /// argon2id lanes (OWASP: 1).
    pub p_cost: u32,
    /// Hashes computed at once; more wait in a queue. Default: CPU cores.
    pub max_concurrent: usize,
    /// Consecutive failures after which each further attempt waits (NIST SP
    /// 800-63B §5.2.2 allows throttling; we back off from the 5th).
    pub backoff_after: u32,
    /// Consecutive failures that lock the account until an admin unlocks
    /// it; NIST SP 800-63B §5.2.2 caps this at 100.
    pub lock_after: u32,
    /// A file of passwords nobody may choose (one per line, `#` comments),
    /// replacing the shipped list of commonly used and breached ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_passwords: Option<PathBuf>,
}

impl PasswordSettings {
    /// The passwords nobody may choose: `blocked_passwords`, or the shipped list.
    pub fn blocklist(&self) -> Result<std::borrow::Cow<'static, wardkey_core::password::Blocklist>, ConfigError> {
        use wardkey_core::password::Blocklist;
        match &self.blocked_passwords {
            None => Ok(std::borrow::Cow::Borrowed(Blocklist::builtin())),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid("password.blocked_passwords", format!("cannot read {}: {e}", path.display()))
                })?;
                Ok(std::borrow::Cow::Owned(Blocklist::parse(&text)))
            }
        }
    }
}

impl Default for PasswordSettings {
    fn default() -> Self {
        let p = Argon2Params::default();
        Self {
            m_cost: p.m_cost,
            t_cost: p.t_cost,
            p_cost: p.p_cost,
            max_concurrent: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            backoff_after: 5,
            lock_after: 100,
            blocked_passwords: None,
        }
    }
}

impl PasswordSettings {
    /// The argon2 parameters.
    pub fn argon2(&self) -> Argon2Params {
        Argon2Params { m_cost: self.m_cost, t_cost: self.t_cost, p_cost: self.p_cost }
    }
}

/// `[oidc]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcSettings {
    /// Lifetime of an authorization code (RFC 6749 §4.1.2: short; ≤ 10 min).
    #[serde(with = "humantime_serde")]
    pub code_ttl: Duration,
    /// Lifetime of access and ID tokens.
    #[serde(with = "humantime_serde")]
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token (bounded also by its SSO session).
    #[serde(with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
    /// A client that repeats a refresh within this window (a lost response,
    /// two tabs) gets the same new tokens instead of tripping reuse detection.
    #[serde(with = "humantime_serde")]
    pub refresh_reuse_grace: Duration,
    /// Tolerated clock difference for `iat`/`exp`/`nbf` of tokens others sign.
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    /// How often each node reloads signing keys from the store, so a key
    /// rotated by `wardkey keys rotate` is used within this bound.
    #[serde(with = "humantime_serde")]
    pub key_reload_interval: Duration,
}

impl Default for OidcSettings {
    fn default() -> Self {
        Self {
            code_ttl: Duration::from_secs(60),
            access_token_ttl: Duration::from_secs(600),
            refresh_token_ttl: Duration::from_secs(13 * 3600),
            refresh_reuse_grace: Duration::from_secs(10),
            clock_skew: Duration::from_secs(30),
            key_reload_interval: Duration::from_secs(30),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` for people, `json` for log shippers.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `wardkey_idp=debug,info`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration problem, phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a key is unknown or mistyped.
    #[error("configuration: {0}")]
    Parse(String),
    /// A value parsed but makes no sense.
    #[error("configuration: {key}: {message}")]
    Invalid {
        /// `section.key`.
        key: &'static str,
        /// What is wrong and what would be right.
        message: String,
    },
    /// A `[directory]` setting makes no sense.
    #[error("configuration: {key}: {message}")]
    Directory {
        /// `directory.…` (with the source's index).
        key: String,
        /// What is wrong and what would be right.
        message: String,
    },
    /// An entry of `[[webauthn.approved_models]]` cannot be used.
    #[error("configuration: webauthn.approved_models entry {entry} ({description:?}): {message}")]
    ApprovedModel {
        /// Which entry, counting from 1 in file order.
        entry: usize,
        /// Its description, so the operator finds it.
        description: String,
        /// What is wrong and what would be right.
        message: String,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

impl Settings {
    /// A warning when `server.listen`'s port differs from the one in
    /// `server.public_url` with no proxy in front (`trust_forwarded_for`
    /// off): browsers and applications are sent to `public_url`, where
    /// nothing may be listening.
    pub fn listen_mismatch(&self) -> Option<String> {
        if self.server.trust_forwarded_for {
            return None;
        }
        let public = url::Url::parse(&self.server.public_url).ok()?;
        let public_port = public.port_or_known_default()?;
        let listen_port: u16 = self.server.listen.rsplit_once(':')?.1.parse().ok()?;
        (listen_port != 0 && listen_port != public_port).then(|| {
            format!(
                "server.listen is port {listen_port} but server.public_url ({}) is port {public_port}: browsers and \
                 applications are sent to public_url. Put a proxy on {public_port} (and set \
                 server.trust_forwarded_for), or make the two agree",
                self.server.public_url
            )
        })
    }

    /// Load defaults, then `file` (if given and present), then the
    /// environment. A file named explicitly must exist.
    pub fn load(file: Option<&Path>, explicit: bool) -> Result<Self, ConfigError> {
        Self::load_from(file, explicit, std::env::vars())
    }

    /// [`Settings::load`] with an explicit environment, for tests.
    pub fn load_from(
        file: Option<&Path>,
        explicit: bool,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if path.exists() {
                figment = figment.merge(Toml::file_exact(path));
            } else if explicit {
                return Err(ConfigError::Parse(format!("config file {} does not exist", path.display())));
            }
        }
        let env: Vec<(String, String)> =
            env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__")).collect();
        // `KEY_FILE` variables carry a path whose contents are the value, so
        // secrets (database passwords in URLs) need not sit in the environment.
        let mut direct = Vec::new();
        // Which variable set each key, so an error can name it.
        let mut from_env = BTreeMap::new();
        for (k, v) in env {
            match k.strip_suffix("_FILE") {
                Some(base) => {
                    let contents = std::fs::read_to_string(&v)
                        .map_err(|e| ConfigError::Parse(format!("{k}: cannot read {v}: {e}")))?;
                    direct.push((base.to_string(), contents.trim_end().to_string()));
                }
                None => direct.push((k, v)),
            }
        }
        for (k, v) in direct {
            let key = k[ENV_PREFIX.len()..].to_lowercase().replace("__", ".");
            from_env.insert(key.clone(), k.clone());
            // Parsed as figment parses environment values: numbers become
            // numbers, everything else stays a string.
            let value: figment::value::Value = v.parse().unwrap_or_else(|e: std::convert::Infallible| match e {});
            figment = figment.merge(Serialized::default(&key, value));
        }
        let settings: Settings =
            figment.extract().map_err(|e| ConfigError::Parse(describe_figment_error(e, &from_env, file)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Check values that parsed but would not work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(sink) = &self.audit.sink {
            crate::audit_sink::SinkSpec::parse(sink).map_err(|message| invalid("audit.sink", message))?;
        }
        if self.audit.retention.is_some_and(|r| r < Duration::from_secs(24 * 3600)) {
            return Err(invalid(
                "audit.retention",
                "keep at least a day of audit records (\"1day\"); unset keeps them all",
            ));
        }
        if self.console.fresh_sign_in.is_zero() {
            return Err(invalid("console.fresh_sign_in", "must be more than 0, such as \"15m\""));
        }
        self.directory.validate().map_err(|(key, message)| ConfigError::Directory { key, message })?;
        for (i, token) in self.scim.tokens.iter().enumerate() {
            let hex = token.sha256.len() == 64 && token.sha256.chars().all(|c| c.is_ascii_hexdigit());
            if !hex || token.name.trim().is_empty() {
                return Err(ConfigError::Directory {
                    key: format!("scim.tokens[{i}]"),
                    message: "needs a name and sha256, the 64 hex digits `wardkey scim token NAME` prints".into(),
                });
            }
        }
        for (key, value) in [
            ("server.header_read_timeout", self.server.header_read_timeout),
            ("server.request_timeout", self.server.request_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be more than 0s, like \"10s\""));
            }
        }
        self.server.listen.parse::<SocketAddr>().map_err(|_| {
            invalid("server.listen", format!("{:?} is not a socket address like 127.0.0.1:8080", self.server.listen))
        })?;
        let url = Url::parse(&self.server.public_url).map_err(|e| {
            invalid(
                "server.public_url",
                format!(
                    "{:?} is not a URL ({e}); give the address browsers use, like https://sso.trust.nhs.uk",
                    self.server.public_url
                ),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "server.public_url",
                "must be an http(s) URL with no query or fragment (OIDC Core §2: the issuer)",
            ));
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(invalid("server.tls_cert", "tls_cert and tls_key must be set together"));
        }
        if !(self.store.url.starts_with("sqlite:")
            || self.store.url.starts_with("postgres://")
            || self.store.url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "store.url",
                format!("{:?} is not supported: use sqlite://PATH or postgres://…", redact_url(&self.store.url)),
            ));
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&self.store.directory_poll) {
            return Err(invalid(
                "store.directory_poll",
                "must be between 10ms and 1h: it bounds how long a change made with the CLI takes to apply",
            ));
        }
        if !(self.cache.url.starts_with("memory:")
            || self.cache.url.starts_with("redis://")
            || self.cache.url.starts_with("rediss://")
            || self.cache.url.starts_with("redis+sentinel://"))
        {
            return Err(invalid(
                "cache.url",
                format!("{:?} is not supported: use memory://, redis://… or rediss://…", redact_url(&self.cache.url)),
            ));
        }
        let s = &self.session;
        for (key, d) in [
            ("session.idle_timeout", s.idle_timeout),
            ("session.max_lifetime", s.max_lifetime),
            ("oidc.code_ttl", self.oidc.code_ttl),
            ("oidc.access_token_ttl", self.oidc.access_token_ttl),
            ("oidc.refresh_token_ttl", self.oidc.refresh_token_ttl),
            ("oidc.key_reload_interval", self.oidc.key_reload_interval),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        if s.idle_timeout > s.max_lifetime {
            return Err(invalid("session.idle_timeout", "must not exceed session.max_lifetime"));
        }
        if self.oidc.code_ttl > Duration::from_secs(600) {
            return Err(invalid("oidc.code_ttl", "must be at most 10m (RFC 6749 §4.1.2)"));
        }
        self.password.argon2().validate().map_err(|e| invalid("password.m_cost", e.message))?;
        if !(4..=32).contains(&self.tap.pin_min_length) {
            return Err(invalid("tap.pin_min_length", "must be between 4 and 32"));
        }
        for (key, d) in
            [("tap.enrolment_code_ttl", self.tap.enrolment_code_ttl), ("tap.pin_entry_ttl", self.tap.pin_entry_ttl)]
        {
            if d.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        if self.password.max_concurrent == 0 {
            return Err(invalid("password.max_concurrent", "must be at least 1"));
        }
        if self.password.lock_after == 0 || self.password.lock_after > 100 {
            return Err(invalid("password.lock_after", "must be between 1 and 100 (NIST SP 800-63B §5.2.2)"));
        }
        self.webauthn.attestation_ca_list()?;
        Ok(())
    }

    /// PIN grace for a workstation on `ward`.
    pub fn pin_grace(&self, ward: &str) -> Duration {
        self.wards.get(ward).and_then(|w| w.pin_grace).unwrap_or(self.session.pin_grace)
    }

    /// Idle timeout for a workstation on `ward`.
    pub fn ward_idle_timeout(&self, ward: &str) -> Duration {
        self.wards.get(ward).and_then(|w| w.idle_timeout).unwrap_or(self.session.idle_timeout)
    }

    /// The issuer URL without a trailing slash.
    pub fn issuer(&self) -> String {
        self.server.public_url.trim_end_matches('/').to_string()
    }

    /// Whether browsers reach the server over https (cookies get `Secure`
    /// and the `__Host-` prefix).
    pub fn is_https(&self) -> bool {
        self.server.public_url.starts_with("https://")
    }
}

/// Each error with its key and where the value came from: the environment
/// variable that set it, else the file (`from_env` maps `section.key` to
/// the variable's name).
fn describe_figment_error(e: figment::Error, from_env: &BTreeMap<String, String>, file: Option<&Path>) -> String {
    e.into_iter()
        .map(|e| {
            let path = e.path.join(".");
            let key = if path.is_empty() { String::new() } else { format!("{path}: ") };
            let var =
                from_env.iter().find(|(k, _)| !path.is_empty() && (**k == path || k.starts_with(&format!("{path}."))));
            let source = match (var, file.filter(|f| f.exists())) {
                (Some((_, name)), _) => format!(" (from the environment variable {name})"),
                (None, Some(file)) => format!(" (in {})", file.display()),
                (None, None) => e.metadata.as_ref().map(|m| format!(" (from {})", m.name)).unwrap_or_default(),
            };
            format!("{key}{}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_listen_port_public_url_does_not_name_is_warned_about() {
        let mut s = Settings::default();
        assert_eq!(s.listen_mismatch(), None, "the defaults agree");
        s.server.listen = "0.0.0.0:8081".into();
        assert!(s.listen_mismatch().is_some_and(|w| w.contains("8081") && w.contains("8080")));
        s.server.public_url = "https://sso.trust.nhs.uk".into();
        s.server.trust_forwarded_for = true;
        assert_eq!(s.listen_mismatch(), None, "behind a proxy the ports differ by design");
    }

    #[test]
    fn defaults_are_valid() {
        let s = Settings::load_from(None, false, env(&[])).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn env_overrides_and_names_bad_keys() {
        let s = Settings::load_from(
            None,
            false,
            env(&[
                ("WARDKEY_SESSION__PIN_GRACE", "2h"),
                ("WARDKEY_PASSWORD__M_COST", "1024"),
                ("WARDKEY_TEST_PG_URL", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(s.session.pin_grace, Duration::from_secs(7200));
        assert_eq!(s.password.m_cost, 1024);
        let e = Settings::load_from(None, false, env(&[("WARDKEY_SESSION__PIN_GRAC", "2h")])).unwrap_err().to_string();
        assert!(e.contains("pin_grac"), "{e}");
        let e =
            Settings::load_from(None, false, env(&[("WARDKEY_SESSION__PIN_GRACE", "soon")])).unwrap_err().to_string();
        assert!(e.contains("pin_grace") && e.contains("environment variable WARDKEY_SESSION__PIN_GRACE"), "{e}");
        for poll in ["0s", "2h"] {
            let e = Settings::load_from(None, false, env(&[("WARDKEY_STORE__DIRECTORY_POLL", poll)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("store.directory_poll"), "{poll}: {e}");
        }
    }

    #[test]
    fn file_secrets_and_unknown_file_keys() {
        let dir = std::env::temp_dir().join(format!("wk-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("url");
        std::fs::write(&secret, "sqlite://./x.db\n").unwrap();
        let s =
            Settings::load_from(None, false, env(&[("WARDKEY_STORE__URL_FILE", secret.to_str().unwrap())])).unwrap();
        assert_eq!(s.store.url, "sqlite://./x.db");
        let file = dir.join("wardkey.toml");
        std::fs::write(&file, "[server]\nlisen = \"x\"\n").unwrap();
        let e = Settings::load_from(Some(&file), true, env(&[])).unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
        std::fs::write(&file, "[server]\nlisten = \"nonsense\"\n").unwrap();
        let e = Settings::load_from(Some(&file), true, env(&[])).unwrap_err().to_string();
        assert!(e.contains("server.listen"), "{e}");
        let e = Settings::load_from(Some(&dir.join("missing.toml")), true, env(&[])).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `config/wardkey.toml` documents every key with its default value, so
    /// it must parse to exactly the defaults and mention every key.
    #[test]
    fn example_config_documents_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/wardkey.toml");
        let loaded = Settings::load_from(Some(&path), true, env(&[])).unwrap();
        assert_eq!(loaded, Settings::default());
        let text = std::fs::read_to_string(&path).unwrap();
        let defaults = toml::Value::try_from(Settings::default()).unwrap();
        for (section, table) in defaults.as_table().unwrap() {
            assert!(text.contains(&format!("[{section}")), "section {section} undocumented");
            for key in table.as_table().unwrap().keys() {
                assert!(text.contains(&format!("{key} =")), "{section}.{key} undocumented");
            }
        }
        for key in ["tls_cert", "tls_key", "max_concurrent", "idle_timeout", "pin_grace"] {
            assert!(text.contains(&format!("# {key} =")), "{key} undocumented");
        }
        let source = toml::Value::try_from(wardkey_directory::LdapSource::default()).unwrap();
        let mut keys: Vec<String> = source.as_table().unwrap().keys().cloned().collect();
        keys.extend(["bind_password", "bind_password_file", "ca_file"].map(String::from));
        for key in keys.iter().filter(|k| *k != "roles") {
            assert!(text.contains(&format!("# {key} =")), "directory.ldap.{key} undocumented");
        }
        assert!(text.contains("[directory.ldap.roles]"));
    }

    #[test]
    fn ward_policies_override_the_session_defaults() {
        let dir = std::env::temp_dir().join(format!("wk-ward-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("wardkey.toml");
        std::fs::write(&file, "[wards.\"ICU\"]\npin_grace = \"1h\"\nidle_timeout = \"15m\"\n").unwrap();
        let s = Settings::load_from(Some(&file), true, env(&[])).unwrap();
        assert_eq!(s.pin_grace("ICU"), Duration::from_secs(3600));
        assert_eq!(s.ward_idle_timeout("ICU"), Duration::from_secs(900));
        assert_eq!(s.pin_grace("Ward 4"), s.session.pin_grace);
        std::fs::write(&file, "[wards.\"ICU\"]\npin_grase = \"1h\"\n").unwrap();
        let e = Settings::load_from(Some(&file), true, env(&[])).unwrap_err().to_string();
        assert!(e.contains("pin_grase"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn urls_are_redacted() {}

    /// A CA certificate as a trust would hand it over, in PEM.
    fn ca_pem() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Trust key attestation CA");
        params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap().pem()
    }

    #[test]
    fn approved_models_are_read_once_and_bad_entries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("keys-ca.pem");
        std::fs::write(&ca, ca_pem()).unwrap();
        let file = dir.path().join("wardkey.toml");
        let write = |models: &[(&Path, &str, &str)], passkeys: bool| {
            let mut text = format!("[webauthn]\npasskeys = {passkeys}\n");
            for (ca, aaguid, description) in models {
                text.push_str(&format!(
                    "[[webauthn.approved_models]]\nca = {:?}\naaguid = {aaguid:?}\ndescription = {description:?}\n",
                    ca.display().to_string()
                ));
            }
            std::fs::write(&file, text).unwrap();
        };
        let load = || Settings::load_from(Some(&file), true, env(&[]));
        let yubikey = "2fc0579f-8113-47ea-b116-bb5a8db9202a";
        let badge = "0f2c1a9e-3c5d-4b7e-9a61-2d8e5f4c7b10";

        // Two models under one CA: one CA in the list, knowing both.
        write(&[(&ca, yubikey, "YubiKey 5 NFC"), (&ca, badge, "Ward FIDO2 badge")], false);
        let s = load().unwrap();
        assert!(!s.webauthn.passkeys);
        let list = s.webauthn.attestation_ca_list().unwrap().expect("a list");
        assert_eq!(list.len(), 1);
        let models = list.cas().values().next().unwrap().aaguids();
        assert_eq!(models.len(), 2);
        assert_eq!(models[&Uuid::parse_str(yubikey).unwrap()].description_en(), "YubiKey 5 NFC");
        assert!(Settings::default().webauthn.attestation_ca_list().unwrap().is_none(), "no list: any key");

        // A malformed AAGUID, the all-zero one, a missing file, a file that is
        // no certificate: each stops start-up naming the entry.
        write(&[(&ca, yubikey, "YubiKey 5 NFC"), (&ca, "2fc0579f-8113", "Ward FIDO2 badge")], false);
        let e = load().unwrap_err().to_string();
        assert!(e.contains("approved_models entry 2") && e.contains("Ward FIDO2 badge"), "{e}");
        assert!(e.contains("is not an AAGUID"), "{e}");
        write(&[(&ca, "00000000-0000-0000-0000-000000000000", "Anonymous")], false);
        assert!(load().unwrap_err().to_string().contains("all-zero AAGUID"));
        let missing = dir.path().join("missing-ca.pem");
        write(&[(&missing, yubikey, "YubiKey 5 NFC")], false);
        let e = load().unwrap_err().to_string();
        assert!(e.contains("entry 1") && e.contains("cannot read") && e.contains("missing-ca.pem"), "{e}");
        let garbage = dir.path().join("not-a-cert.pem");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n").unwrap();
        write(&[(&garbage, yubikey, "YubiKey 5 NFC")], false);
        let e = load().unwrap_err().to_string();
        assert!(e.contains("not-a-cert.pem") && e.contains("is not a PEM certificate"), "{e}");
        std::fs::write(&garbage, "hello").unwrap();
        assert!(load().unwrap_err().to_string().contains("is not a PEM certificate"));
        write(&[(&ca, yubikey, " ")], false);
        assert!(load().unwrap_err().to_string().contains("description"));
        // A misspelt key in an entry is an error like anywhere else.
        std::fs::write(&file, "[[webauthn.approved_models]]\ncert = \"x\"\naaguid = \"y\"\ndescription = \"z\"\n")
            .unwrap();
        assert!(load().unwrap_err().to_string().contains("cert"));
        // Passkeys can be turned off from the environment too.
        let s = Settings::load_from(None, false, env(&[("WARDKEY_WEBAUTHN__PASSKEYS", "false")])).unwrap();
        assert!(!s.webauthn.passkeys);
    }
}
