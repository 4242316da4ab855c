//! The workstation's Ed25519 key on disk: making it at enrolment, keeping
//! it in a file only the agent's user can read. Signing is
//! `wardkey_proto::signer`, shared with the load tool and the tests so that
//! every workstation's requests are the same bytes; it is re-exported here.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use wardkey_proto::signer::{
    ASSERTION_LIFETIME_SECS, CryptoError, JwsHeader, Signer, TAP_TYP, WorkstationKey, new_jti,
};

/// A key file problem.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `enrol` found a key already there.
    #[error("{0} already exists: this workstation looks enrolled already; use --force to replace its key")]
    Exists(PathBuf),
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an Ed25519 PKCS#8 key.
    #[error("{0} is not an Ed25519 private key (PKCS#8 DER); re-enrol this workstation")]
    Invalid(PathBuf),
    /// aws-lc-rs could not make a key or signature (no entropy?).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Read the key file. A file others can read still loads (the agent
/// must keep working at the bedside) but is logged loudly.
pub fn load_key(path: &Path) -> Result<WorkstationKey, KeyError> {
    let io = |source| KeyError::Io { path: path.into(), source };
    let der = std::fs::read(path).map_err(io)?;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the workstation key file can be read by other users; run chmod 600 on it"
        );
    }
    WorkstationKey::from_pkcs8(&der).ok_or_else(|| KeyError::Invalid(path.into()))
}

/// Write a private key to `path` with mode 0600 from the first byte on
/// (never a window where another user could read it). Without `overwrite`,
/// an existing file is an error rather than a silently lost enrolment.
pub fn write_key_file(path: &Path, der: &[u8], overwrite: bool) -> Result<(), KeyError> {
    let io = |source| KeyError::Io { path: path.into(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::Exists(path.into()),
        _ => io(e),
    })?;
    // `mode` only applies when the file is created: tighten an old one too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    file.write_all(der).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    #[test]
    fn key_files_are_0600_and_never_silently_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        let (key, der) = WorkstationKey::generate().unwrap();
        write_key_file(&path, &der, false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let loaded = load_key(&path).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        assert_eq!(loaded.public_key().len(), 32);
        assert_eq!(URL_SAFE_NO_PAD.decode(loaded.public_key_b64()).unwrap(), key.public_key());

        let (_, other) = WorkstationKey::generate().unwrap();
        assert!(matches!(write_key_file(&path, &other, false), Err(KeyError::Exists(_))));
        assert_eq!(load_key(&path).unwrap().public_key(), key.public_key());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_key_file(&path, &other, true).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_ne!(load_key(&path).unwrap().public_key(), key.public_key());
    }

    #[test]
    fn garbage_key_files_are_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        write_key_file(&path, b"not a key", false).unwrap();
        assert!(matches!(load_key(&path), Err(KeyError::Invalid(_))));
        assert!(matches!(load_key(&dir.path().join("missing")), Err(KeyError::Io { .. })));
    }
}
