//! The fixture `setup` writes and `shift-change` reads: enrolled
//! workstations with their private keys, clinicians with badge UIDs and
//! PINs, and the EPR clients for token exchange.
//!
//! It holds test credentials in clear (that is its purpose), so it is
//! written readable by its owner only. Never point `setup` at a production
//! directory: it creates real users and workstations there.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use wardkey_proto::Redacted;

/// Version tag of the fixture format.
pub const SCHEMA: &str = "wardkey-bench/fixture-1";

/// Everything a shift-change run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fixture {
    /// [`SCHEMA`].
    pub schema: String,
    /// The server URL setup ran against.
    pub server: String,
    /// Its issuer, from discovery.
    pub issuer: String,
    /// When setup wrote this, seconds since the Unix epoch.
    pub created_at: i64,
    /// Enrolled workstations.
    pub workstations: Vec<FixtureWorkstation>,
    /// Clinicians with badges and PINs.
    pub clinicians: Vec<FixtureClinician>,
    /// Client ids of the EPR apps registered for token exchange.
    pub clients: Vec<String>,
}

/// One enrolled workstation. `Debug` hides the key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct FixtureWorkstation {
    /// Its name.
    pub name: String,
    /// Its ward.
    pub ward: String,
    /// The id the server gave it (`kid`, `iss`, token-exchange `client_id`).
    pub id: String,
    /// Its Ed25519 key, PKCS#8, standard base64.
    pub pkcs8: String,
}

impl std::fmt::Debug for FixtureWorkstation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixtureWorkstation")
            .field("name", &self.name)
            .field("ward", &self.ward)
            .field("id", &self.id)
            .field("pkcs8", &Redacted)
            .finish()
    }
}

/// One clinician. `Debug` hides the badge UID and the PIN.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct FixtureClinician {
    /// Login name.
    pub username: String,
    /// The ward they work on (they tap only at its workstations, so no
    /// cloned-badge alert fires).
    pub ward: String,
    /// Badge UID, hex.
    pub badge: String,
    /// Tap PIN.
    pub pin: String,
}

impl std::fmt::Debug for FixtureClinician {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixtureClinician")
            .field("username", &self.username)
            .field("ward", &self.ward)
            .field("badge", &Redacted)
            .field("pin", &Redacted)
            .finish()
    }
}

impl Fixture {
    /// Read and check a fixture file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("reading the fixture {} (write one with `wardkey-bench setup`)", path.display())
        })?;
        let fixture: Fixture = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a wardkey-bench fixture", path.display()))?;
        if fixture.schema != SCHEMA {
            bail!("{}: fixture format {:?}, this tool reads {SCHEMA:?}", path.display(), fixture.schema);
        }
        if fixture.workstations.is_empty() || fixture.clinicians.is_empty() {
            bail!("{}: the fixture has no workstations or no clinicians", path.display());
        }
        Ok(fixture)
    }

    /// Write the fixture, readable by its owner only.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        write_private(path, text.as_bytes()).with_context(|| format!("writing the fixture {}", path.display()))
    }

    /// Wards in first-seen order of the workstations.
    pub fn wards(&self) -> Vec<String> {
        let mut wards: Vec<String> = Vec::new();
        for ws in &self.workstations {
            if !wards.contains(&ws.ward) {
                wards.push(ws.ward.clone());
            }
        }
        wards
    }
}

/// Write `bytes` to `path` with mode 0600 (on Unix), replacing it whole.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Fixture {
        Fixture {
            schema: SCHEMA.into(),
            server: "http://127.0.0.1:8080".into(),
            issuer: "http://127.0.0.1:8080".into(),
            created_at: 1,
            workstations: vec![
                FixtureWorkstation { name: "pc1".into(), ward: "W1".into(), id: "a".into(), pkcs8: "AAAA".into() },
                FixtureWorkstation { name: "pc2".into(), ward: "W2".into(), id: "b".into(), pkcs8: "AAAA".into() },
                FixtureWorkstation { name: "pc3".into(), ward: "W1".into(), id: "c".into(), pkcs8: "AAAA".into() },
            ],
            clinicians: vec![FixtureClinician {
                username: "n1".into(),
                ward: "W1".into(),
                badge: "04AB".into(),
                pin: "123456".into(),
            }],
            clients: vec!["epr".into()],
        }
    }

    #[test]
    fn round_trip_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fixture.json");
        let fixture = sample();
        fixture.save(&path).unwrap();
        assert_eq!(Fixture::load(&path).unwrap(), fixture);
        assert_eq!(fixture.wards(), vec!["W1", "W2"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let mut other = sample();
        other.schema = "something-else".into();
        std::fs::write(&path, serde_json::to_string(&other).unwrap()).unwrap();
        assert!(Fixture::load(&path).unwrap_err().to_string().contains("format"));
        assert!(Fixture::load(&dir.path().join("missing.json")).is_err());
    }
}
