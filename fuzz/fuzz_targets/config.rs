//! Configuration loading: the same text as the server's `wardkey.toml`
//! (`config::Settings::load_from`, with an empty environment: figment,
//! serde with unknown keys refused, humantime durations, then
//! `Settings::validate`, including the approved-model CA list) and as the
//! agent's `agent.toml` (`AgentConfig::load`). A server configuration that
//! loads must load again, equal, from its own serialisation.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wardkey_agent::AgentConfig;
use wardkey_idp::Settings;

fn dir() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let (a, b) = (dir.path().join("wardkey.toml"), dir.path().join("again.toml"));
        (dir, a, b)
    })
}

fuzz_target!(init: wardkey_fuzz::seeds::maybe_write("config"), |data: &[u8]| {
    let (_, path, again) = dir();
    std::fs::write(path, data).expect("write");
    let no_env: Vec<(String, String)> = Vec::new();
    if let Ok(settings) = Settings::load_from(Some(path), true, no_env.clone()) {
        let text = toml::to_string(&settings).expect("a loaded configuration serialises");
        std::fs::write(again, &text).expect("write");
        match Settings::load_from(Some(again), true, no_env) {
            Ok(reloaded) => assert!(reloaded == settings, "reloading changed the configuration:\n{text}"),
            Err(e) => panic!("a loaded configuration does not load again: {e}\n{text}"),
        }
    }
    if let Ok(config) = AgentConfig::load(path) {
        let _ = config.enrolment();
    }
});
