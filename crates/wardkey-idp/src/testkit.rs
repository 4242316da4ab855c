//! What the services' own tests stand on: a real in-memory SQLite store, the
//! in-process cache and a clock moved by hand. No HTTP server, no router.

use std::sync::Arc;

use wardkey_cache::{Cache, MemoryCache};
use wardkey_core::clock::ManualClock;
use wardkey_core::user::{NewUser, User};
use wardkey_core::workstation::Workstation;
use wardkey_store::Store;

use crate::config::Settings;

/// The parts services are built from.
pub struct Kit {
    pub store: Arc<dyn Store>,
    pub cache: Arc<dyn Cache>,
    pub clock: Arc<ManualClock>,
    pub settings: Arc<Settings>,
}

impl Kit {
    /// Default settings, with argon2 at its cheapest so tests stay quick.
    pub async fn new() -> Self {
        let mut settings = Settings::default();
        settings.store.create_if_missing = true;
        settings.password.m_cost = 1024;
        settings.password.t_cost = 1;
        Self {
            store: wardkey_store::open("sqlite::memory:").await.expect("store"),
            cache: Arc::new(MemoryCache::new()),
            clock: Arc::new(ManualClock::new()),
            settings: Arc::new(settings),
        }
    }

    /// The time now, by the kit's clock.
    pub fn now(&self) -> i64 {
        wardkey_core::clock::Clock::now(self.clock.as_ref())
    }

    /// An audit log writing to the kit's store.
    pub fn audit(&self) -> crate::audit::AuditLog {
        crate::audit::AuditLog::spawn(self.store.clone(), self.shared_clock(), Arc::default())
    }

    /// The clock, as services hold it.
    pub fn shared_clock(&self) -> wardkey_core::clock::SharedClock {
        self.clock.clone()
    }

    /// A user called `username` with `password`, if given.
    pub async fn user(&self, username: &str, password: Option<&str>) -> User {
        let hash = password.map(|p| wardkey_core::password::hash(&self.settings.password.argon2(), p).expect("hash"));
        let new = NewUser { username: username.into(), ..Default::default() };
        self.store.create_user(&new, hash.as_deref(), self.now()).await.expect("user")
    }

    /// An enabled workstation `id` on Ward 7, not stored.
    pub fn workstation(id: &str) -> Workstation {
        Workstation {
            id: id.into(),
            name: format!("PC {id}"),
            ward: "Ward 7".into(),
            public_key: None,
            enabled: true,
            created_at: 0,
            enrolled_at: None,
        }
    }
}
