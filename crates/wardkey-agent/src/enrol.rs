//! Enrolment, once per workstation: make the Ed25519 key, register its
//! public half with the admin's one-time code, and record who the server
//! says this workstation is in agent.toml.
//!
//! The private key goes to a temporary file (mode 0600) first and takes the
//! key file's place only after the server accepted it, so a refused or
//! failed enrolment never destroys a working key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wardkey_proto::tap::EnrolResponse;

use crate::client::{self, ServerError};
use crate::config::{self, AgentConfig, ConfigError, Enrolment};
use crate::keys::{self, KeyError, WorkstationKey};

/// What `wardkey-agent enrol` was given. `Debug` hides the code.
#[derive(Clone)]
pub struct EnrolOptions {
    /// agent.toml to create or update.
    pub config_path: PathBuf,
    /// The server URL.
    pub server: String,
    /// The one-time code from `wardkey workstation enrol`.
    pub code: String,
    /// Replace an existing key (re-enrolment).
    pub force: bool,
}

impl std::fmt::Debug for EnrolOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrolOptions")
            .field("config_path", &self.config_path)
            .field("server", &self.server)
            .field("code", &wardkey_proto::Redacted)
            .field("force", &self.force)
            .finish()
    }
}

/// Why enrolment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// agent.toml is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key could not be made or written.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The server refused the code or could not be reached.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The code is empty.
    #[error("the enrolment code is empty")]
    EmptyCode,
}

/// Enrol this workstation; returns who the server says it is.
pub async fn enrol(options: &EnrolOptions) -> Result<EnrolResponse, EnrolError> {
    let code = options.code.trim();
    if code.is_empty() {
        return Err(EnrolError::EmptyCode);
    }
    let server =
        config::normalise_server(&options.server).map_err(|message| ConfigError::Invalid { key: "server", message })?;
    let existing = AgentConfig::load(&options.config_path)?;
    let key_path = existing.key_path();
    if key_path.exists() && !options.force {
        return Err(KeyError::Exists(key_path).into());
    }
    if let Some(dir) = key_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| KeyError::Io { path: dir.into(), source })?;
    }
    let (key, der) = WorkstationKey::generate().map_err(KeyError::from)?;
    let pending = pending_path(&key_path);
    keys::write_key_file(&pending, &der, true)?;

    let http = client::http_client(existing.request_timeout.max(Duration::from_secs(10)))?;
    let answer = match client::enrol(&http, &server, code, &key.public_key_b64()).await {
        Ok(answer) => answer,
        Err(e) => {
            let _ = std::fs::remove_file(&pending);
            return Err(e.into());
        }
    };
    std::fs::rename(&pending, &key_path).map_err(|source| KeyError::Io { path: key_path.clone(), source })?;
    let enrolment = Enrolment {
        server,
        workstation_id: answer.workstation_id.clone(),
        name: answer.name.clone(),
        ward: answer.ward.clone(),
    };
    config::write_enrolment(&options.config_path, &enrolment, &existing.key_file)?;
    Ok(answer)
}

fn pending_path(key_path: &Path) -> PathBuf {
    let mut name = key_path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    key_path.with_file_name(name)
}
