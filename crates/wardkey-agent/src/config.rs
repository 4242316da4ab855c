//! `agent.toml`: where the server is, who this workstation is, and how the
//! agent behaves at the ward PC.
//!
//! `wardkey-agent enrol` writes the enrolment keys (`server`,
//! `workstation_id`, `name`, `ward`, `key_file`) and keeps every other line
//! and comment an IT person put there. Every other key has a default, so an
//! enrolled workstation needs nothing else. Relative paths (`key_file`, the
//! broker socket) are relative to the directory of `agent.toml`, so the
//! agent behaves the same whatever directory it is started from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::peer::PeerPolicy;

use crate::reader::ReaderSpec;

/// The config file used when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "agent.toml";

/// Idle time after which an unlocked workstation locks itself.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Keyboard-wedge readers repeat a held card's UID; reads of the same UID
/// this close together are one tap.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(1500);

/// How long one request to the server may take before the agent gives up
/// and stays locked: a clinician should never wait on a hung connection.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The agent's settings, as read from `agent.toml` (unknown keys are an
/// error, so a typo never silently falls back to a default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The Wardkey server (its issuer URL). Set by `enrol`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// This workstation's id at the server: `iss`/`kid` of every signed
    /// request. Set by `enrol`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workstation_id: Option<String>,
    /// The name IT gave this workstation; shown by the broker. Set by `enrol`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The ward it stands on. Set by `enrol`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ward: Option<String>,
    /// The workstation's Ed25519 private key (PKCS#8 DER, mode 0600).
    pub key_file: PathBuf,
    /// Where badge taps come from (`stdin`, `pcsc`, `fifo:PATH`).
    pub reader: ReaderSpec,
    /// The local token broker's socket (`unix:PATH`).
    pub broker: BrokerAddress,
    /// Who besides the agent's own user may use `broker` (`user:NAME`,
    /// `group:NAME`, `exe:/PATH`), checked by peer credentials.
    pub broker_allow: Vec<String>,
    /// Who besides the desktop user may use the per-user broker that the
    /// lock screen (`wardkey-desk`) serves in the user's session.
    pub desk_allow: Vec<String>,
    /// Whether the lock screen also locks and unlocks the session through
    /// logind (`loginctl lock-session` / `unlock-session`), for desktops
    /// whose own locker should follow it.
    pub desk_session_lock: bool,
    /// Lock after this long without a tap or PIN.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Reads of the same badge within this window are one tap.
    #[serde(with = "humantime_serde")]
    pub debounce: Duration,
    /// Per-request timeout towards the server.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A `tracing` filter (`info`, `debug`, `wardkey_agent=debug`); the
    /// `RUST_LOG` environment variable overrides it.
    pub log_level: String,
    /// Commands run when the workstation unlocks, locks or switches user.
    pub hooks: HooksConfig,
    /// A software FIDO2 key (JSON, see `wardkey_agent::fido2::SoftwareKey`)
    /// answering key taps (the reader line `fido2`): for demonstrations and
    /// tests. Without it, keys on a PC/SC reader answer over CTAP2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fido2_software_key: Option<PathBuf>,
    /// The file this was loaded from (empty for built-in defaults):
    /// relative paths are resolved against its directory.
    #[serde(skip)]
    pub path: PathBuf,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            server: None,
            workstation_id: None,
            name: None,
            ward: None,
            key_file: PathBuf::from("agent.key"),
            reader: ReaderSpec::Stdin,
            broker: BrokerAddress::Unix(PathBuf::from("agent.sock")),
            broker_allow: Vec::new(),
            desk_allow: Vec::new(),
            desk_session_lock: false,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            debounce: DEFAULT_DEBOUNCE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            log_level: "info".into(),
            hooks: HooksConfig::default(),
            fido2_software_key: None,
            path: PathBuf::new(),
        }
    }
}

/// Shell commands (run with `sh -c`) for session changes. Each gets
/// `WARDKEY_EVENT` (`unlock`, `lock`, `switch`) and `WARDKEY_USER` (the
/// username concerned; for `switch` the new one, with
/// `WARDKEY_PREVIOUS_USER` the old one) in its environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    /// Run when a clinician unlocks the workstation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_unlock: Option<String>,
    /// Run when the workstation locks (tap, idle, server lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_lock: Option<String>,
    /// Run when another clinician takes over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_switch: Option<String>,
}

/// Where the local broker listens. Only Unix sockets: their file mode keeps
/// other local users from asking for the clinician's tokens, which a TCP
/// port on localhost could not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BrokerAddress {
    /// `unix:PATH`.
    Unix(PathBuf),
}

impl std::str::FromStr for BrokerAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("unix:") {
            Some(path) if !path.is_empty() => Ok(Self::Unix(PathBuf::from(path))),
            _ => Err(format!("broker must be unix:PATH (a Unix socket path), not {s:?}")),
        }
    }
}

impl TryFrom<String> for BrokerAddress {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<BrokerAddress> for String {
    fn from(b: BrokerAddress) -> Self {
        b.to_string()
    }
}

impl std::fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A config problem, worded so that the person at the ward PC (or IT on
/// the phone) can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a bad value.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's words, naming the key.
        message: String,
    },
    /// A value is out of range.
    #[error("{key}: {message}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// `run` needs an enrolled workstation.
    #[error(
        "{path} has no {missing}: enrol this workstation first with `wardkey-agent enrol --server URL --code CODE`"
    )]
    NotEnrolled {
        /// The config file.
        path: PathBuf,
        /// The first missing key.
        missing: &'static str,
    },
}

/// The enrolment part of the config, all present: what `run` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// The server's issuer URL, without a trailing slash.
    pub server: String,
    /// The workstation id.
    pub workstation_id: String,
    /// The workstation's name.
    pub name: String,
    /// Its ward.
    pub ward: String,
}

impl AgentConfig {
    /// Read and check `path`. A missing file gives the defaults (so
    /// `status` works with only `--broker`); relative paths inside are
    /// resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config = match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.into(), message })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(source) => {
                return Err(ConfigError::Io { path: path.into(), source });
            }
        };
        config.path = path.to_path_buf();
        config.validate()?;
        Ok(config)
    }

    /// Parse TOML text (no path resolution, no range checks).
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }

    /// Range checks, so a bad value stops the agent at start-up with a
    /// message naming the key rather than misbehaving on the ward.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(server) = &self.server {
            normalise_server(server).map_err(|message| ConfigError::Invalid { key: "server", message })?;
        }
        if self.idle_timeout < Duration::from_secs(10) {
            return Err(ConfigError::Invalid { key: "idle_timeout", message: "must be at least 10s".into() });
        }
        if self.debounce > Duration::from_secs(10) {
            return Err(ConfigError::Invalid { key: "debounce", message: "must be at most 10s".into() });
        }
        if self.request_timeout.is_zero() || self.request_timeout > Duration::from_secs(60) {
            return Err(ConfigError::Invalid { key: "request_timeout", message: "must be between 1ms and 60s".into() });
        }
        self.broker_policy()?;
        self.desk_policy()?;
        Ok(())
    }

    /// Who may use the agent's broker socket.
    pub fn broker_policy(&self) -> Result<PeerPolicy, ConfigError> {
        PeerPolicy::new(&self.broker_allow)
            .map_err(|e| ConfigError::Invalid { key: "broker_allow", message: e.to_string() })
    }

    /// Who may use the per-user broker of the lock screen.
    pub fn desk_policy(&self) -> Result<PeerPolicy, ConfigError> {
        PeerPolicy::new(&self.desk_allow)
            .map(PeerPolicy::listed_only)
            .map_err(|e| ConfigError::Invalid { key: "desk_allow", message: e.to_string() })
    }

    /// The enrolment keys, or which one is missing.
    pub fn enrolment(&self) -> Result<Enrolment, ConfigError> {
        let missing = |missing| ConfigError::NotEnrolled { path: self.path.clone(), missing };
        let server = self.server.as_deref().ok_or_else(|| missing("server"))?;
        let server = normalise_server(server).map_err(|message| ConfigError::Invalid { key: "server", message })?;
        Ok(Enrolment {
            server,
            workstation_id: self
                .workstation_id
                .clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| missing("workstation_id"))?,
            name: self.name.clone().unwrap_or_default(),
            ward: self.ward.clone().unwrap_or_default(),
        })
    }

    /// The directory relative paths are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(""))
    }

    /// `key_file`, resolved against the config file's directory.
    pub fn key_path(&self) -> PathBuf {
        self.base_dir().join(&self.key_file)
    }

    /// The software FIDO2 key file, resolved against the config's directory.
    pub fn fido2_software_key_path(&self) -> Option<PathBuf> {
        self.fido2_software_key.as_ref().map(|p| self.base_dir().join(p))
    }

    /// The badge reader, with a FIFO path resolved against the config
    /// file's directory.
    pub fn reader_spec(&self) -> ReaderSpec {
        match &self.reader {
            ReaderSpec::Fifo(p) => ReaderSpec::Fifo(self.base_dir().join(p)),
            other => other.clone(),
        }
    }

    /// The broker socket path, resolved against the config file's directory.
    pub fn broker_path(&self) -> PathBuf {
        match &self.broker {
            BrokerAddress::Unix(p) => self.base_dir().join(p),
        }
    }
}

/// The server URL as the issuer: http(s), no query or fragment, no
/// trailing slash (the server compares `aud` with its issuer exactly).
pub fn normalise_server(server: &str) -> Result<String, String> {
    let url = url::Url::parse(server.trim()).map_err(|e| format!("{server:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{server:?} must be an http:// or https:// URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{server:?} must not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Write the enrolment keys into `path`, keeping every other line and
/// comment (IT may have set hooks or a reader before enrolling). The file is
/// replaced atomically so a crash never leaves half a config.
pub fn write_enrolment(path: &Path, enrolment: &Enrolment, key_file: &Path) -> Result<(), ConfigError> {
    let io = |source| ConfigError::Io { path: path.into(), source };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
    doc["server"] = toml_edit::value(enrolment.server.as_str());
    doc["workstation_id"] = toml_edit::value(enrolment.workstation_id.as_str());
    doc["name"] = toml_edit::value(enrolment.name.as_str());
    doc["ward"] = toml_edit::value(enrolment.ward.as_str());
    doc["key_file"] = toml_edit::value(key_file.to_string_lossy().as_ref());
    let new_text = doc.to_string();
    // The result must still load: never write a config the agent refuses.
    AgentConfig::parse(&new_text).map_err(|message| ConfigError::Parse { path: path.into(), message })?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, new_text).map_err(io)?;
    // Readable by the service user and the lock screen whatever the admin's
    // umask (it holds no secret: the key has its own file).
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644)).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../config/agent.toml");

    #[test]
    fn the_documented_example_parses_and_shows_the_defaults() {
        let parsed = AgentConfig::parse(EXAMPLE).expect("config/agent.toml parses");
        assert_eq!(parsed, AgentConfig::default(), "config/agent.toml must show the built-in defaults");
        parsed.validate().unwrap();
    }

    #[test]
    fn every_key_is_documented_in_the_example() {
        let full = AgentConfig {
            server: Some("https://wardkey.example.nhs.uk".into()),
            workstation_id: Some("ws".into()),
            name: Some("n".into()),
            ward: Some("w".into()),
            hooks: HooksConfig { on_unlock: Some("a".into()), on_lock: Some("b".into()), on_switch: Some("c".into()) },
            ..AgentConfig::default()
        };
        let value = toml::Value::try_from(&full).unwrap();
        let mut keys = Vec::new();
        for (k, v) in value.as_table().unwrap() {
            match v.as_table() {
                Some(t) => keys.extend(t.keys().map(|sub| format!("{k}.{sub}"))),
                None => keys.push(k.clone()),
            }
        }
        for key in keys {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(EXAMPLE.contains(&format!("{leaf} =")), "config/agent.toml does not document {key}");
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let config = AgentConfig {
            server: Some("https://wardkey.example.nhs.uk".into()),
            workstation_id: Some("ws_123".into()),
            name: Some("Ward 7 bay PC".into()),
            ward: Some("ward-7".into()),
            key_file: "/etc/wardkey/agent.key".into(),
            reader: ReaderSpec::Fifo("/run/wardkey/badges".into()),
            broker: "unix:/run/user/1000/wardkey.sock".parse().unwrap(),
            broker_allow: vec!["group:0".into()],
            desk_allow: vec!["exe:/opt/epr/bin/epr".into()],
            desk_session_lock: true,
            idle_timeout: Duration::from_secs(300),
            debounce: Duration::from_millis(800),
            request_timeout: Duration::from_secs(3),
            log_level: "debug".into(),
            hooks: HooksConfig { on_unlock: None, on_lock: Some("loginctl lock-session".into()), on_switch: None },
            fido2_software_key: Some("fido2-key.json".into()),
            path: PathBuf::new(),
        };
        let text = toml::to_string(&config).unwrap();
        assert_eq!(AgentConfig::parse(&text).unwrap(), config);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_key_named() {
        let err = AgentConfig::parse("idle_timout = \"5m\"").unwrap_err();
        assert!(err.contains("idle_timout"), "{err}");
        let err = AgentConfig::parse("reader = \"usb\"").unwrap_err();
        assert!(err.contains("reader"), "{err}");
        let err = AgentConfig::parse("broker = \"tcp:127.0.0.1:1\"").unwrap_err();
        assert!(err.contains("unix:PATH"), "{err}");
        let config = AgentConfig { idle_timeout: Duration::from_secs(1), ..Default::default() };
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "idle_timeout", .. })));
        let config = AgentConfig { server: Some("ftp://x".into()), ..Default::default() };
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key: "server", .. })));
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "key_file = \"keys/ws.key\"\nbroker = \"unix:/run/x.sock\"\n").unwrap();
        let config = AgentConfig::load(&path).unwrap();
        assert_eq!(config.key_path(), dir.path().join("keys/ws.key"));
        assert_eq!(config.broker_path(), PathBuf::from("/run/x.sock"));
        let config = AgentConfig { reader: ReaderSpec::Fifo("badges".into()), ..config };
        assert_eq!(config.reader_spec(), ReaderSpec::Fifo(dir.path().join("badges")));
        let missing = AgentConfig::load(&dir.path().join("none.toml")).unwrap();
        assert_eq!(missing.key_path(), dir.path().join("agent.key"));
        assert!(matches!(missing.enrolment(), Err(ConfigError::NotEnrolled { missing: "server", .. })));
    }

    #[test]
    fn server_urls_lose_their_trailing_slash() {
        assert_eq!(normalise_server("https://idp.example/").unwrap(), "https://idp.example");
        assert_eq!(normalise_server("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(normalise_server("https://idp.example/wardkey/").unwrap(), "https://idp.example/wardkey");
        assert!(normalise_server("idp.example").is_err());
    }

    #[test]
    fn enrolment_keeps_comments_and_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "# Bay 3, set up by IT\nidle_timeout = \"5m\"\n\n[hooks]\n# lock the desktop\non_lock = \"loginctl lock-session\"\n").unwrap();
        let enrolment = Enrolment {
            server: "https://idp.example".into(),
            workstation_id: "ws_1".into(),
            name: "Bay 3".into(),
            ward: "ward-7".into(),
        };
        write_enrolment(&path, &enrolment, Path::new("agent.key")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("# Bay 3, set up by IT") && text.contains("# lock the desktop"), "{text}");
        let config = AgentConfig::load(&path).unwrap();
        assert_eq!(config.enrolment().unwrap(), enrolment);
        assert_eq!(config.idle_timeout, Duration::from_secs(300));
        assert_eq!(config.hooks.on_lock.as_deref(), Some("loginctl lock-session"));
        // Enrolling again (with --force) replaces the values, not duplicates them.
        let again = Enrolment { workstation_id: "ws_2".into(), ..enrolment };
        write_enrolment(&path, &again, Path::new("agent.key")).unwrap();
        assert_eq!(AgentConfig::load(&path).unwrap().enrolment().unwrap(), again);
    }
}
