//! Hooks: commands from agent.toml run when the workstation unlocks, locks
//! or changes clinician (for example `loginctl lock-session`), so the
//! desktop follows the badge without the agent knowing each desktop.
//!
//! They run one at a time in the order of the events (a lock hook finishing
//! after the next unlock hook would leave the screen locked), off the tap
//! path (a slow hook never delays the clinician), each under a time limit.
//! A failing hook is logged and never stops the agent.

use std::process::Stdio;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wardkey_proto::tap::UserSummary;

use crate::config::HooksConfig;

/// A hook still running after this is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Which session change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookEvent {
    /// A clinician unlocked the workstation.
    Unlock,
    /// It locked.
    Lock,
    /// Another clinician took over.
    Switch,
}

impl HookEvent {
    /// The `WARDKEY_EVENT` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unlock => "unlock",
            Self::Lock => "lock",
            Self::Switch => "switch",
        }
    }
}

/// One hook to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCall {
    /// What happened.
    pub event: HookEvent,
    /// `WARDKEY_USER`: who unlocked, who was locked out, or who took over.
    pub user: String,
    /// `WARDKEY_PREVIOUS_USER` on a switch.
    pub previous: Option<String>,
}

impl HookCall {
    /// A call for `event` concerning `user` (and `previous` on a switch).
    pub fn new(event: HookEvent, user: &UserSummary, previous: Option<&UserSummary>) -> Self {
        Self { event, user: user.username.clone(), previous: previous.map(|p| p.username.clone()) }
    }
}

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// `sh` could not be started.
    #[error("could not start: {0}")]
    Spawn(std::io::Error),
    /// The command exited unsuccessfully.
    #[error("exited with {status}: {stderr}")]
    Failed {
        /// The exit status.
        status: std::process::ExitStatus,
        /// The end of what it wrote on stderr.
        stderr: String,
    },
    /// It ran longer than [`HOOK_TIMEOUT`] and was killed.
    #[error("did not finish within {0:?} and was killed")]
    TimedOut(Duration),
}

/// The configured hook commands.
#[derive(Debug, Clone)]
pub struct Hooks {
    config: HooksConfig,
    timeout: Duration,
}

impl Hooks {
    /// Hooks from agent.toml.
    pub fn new(config: HooksConfig) -> Self {
        Self { config, timeout: HOOK_TIMEOUT }
    }

    /// The same hooks with another time limit (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command for `event`, if one is set.
    pub fn command(&self, event: HookEvent) -> Option<&str> {
        let command = match event {
            HookEvent::Unlock => &self.config.on_unlock,
            HookEvent::Lock => &self.config.on_lock,
            HookEvent::Switch => &self.config.on_switch,
        };
        command.as_deref().filter(|c| !c.trim().is_empty())
    }

    /// Run the hook for `call` and wait for it. `Ok(false)` when no hook is
    /// set for the event.
    pub async fn run(&self, call: &HookCall) -> Result<bool, HookError> {
        let Some(command) = self.command(call.event) else {
            return Ok(false);
        };
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .env("WARDKEY_EVENT", call.event.as_str())
            .env("WARDKEY_USER", &call.user)
            .env_remove("WARDKEY_PREVIOUS_USER")
            // Never let a hook read the reader's stdin: it may hold a PIN.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(previous) = &call.previous {
            cmd.env("WARDKEY_PREVIOUS_USER", previous);
        }
        let child = cmd.spawn().map_err(HookError::Spawn)?;
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| HookError::TimedOut(self.timeout))?
            .map_err(HookError::Spawn)?;
        if output.status.success() {
            return Ok(true);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        let tail = stderr.char_indices().rev().nth(300).map_or(stderr, |(i, _)| &stderr[i..]);
        Err(HookError::Failed { status: output.status, stderr: tail.to_string() })
    }
}

/// Runs hooks in the background, one after another.
#[derive(Debug, Clone)]
pub struct HookRunner {
    tx: mpsc::UnboundedSender<HookCall>,
}

impl HookRunner {
    /// Start the runner; it ends with `shutdown`.
    pub fn spawn(hooks: Hooks, shutdown: CancellationToken) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<HookCall>();
        tokio::spawn(async move {
            loop {
                let call = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    call = rx.recv() => match call {
                        Some(call) => call,
                        None => return,
                    },
                };
                run_logged(&hooks, &call).await;
            }
        });
        Self { tx }
    }

    /// Queue a hook; never waits.
    pub fn fire(&self, call: HookCall) {
        if self.tx.send(call).is_err() {
            tracing::debug!("hook runner stopped; hook not run");
        }
    }
}

/// Run a hook and log the outcome.
pub async fn run_logged(hooks: &Hooks, call: &HookCall) {
    match hooks.run(call).await {
        Ok(true) => tracing::debug!(event = call.event.as_str(), "hook ran"),
        Ok(false) => {}
        Err(e) => tracing::warn!(event = call.event.as_str(), error = %e, "the on_{} hook failed", call.event.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(event: HookEvent) -> HookCall {
        HookCall { event, user: "alice".into(), previous: None }
    }

    #[tokio::test]
    async fn hooks_see_the_event_and_user() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let hooks = Hooks::new(HooksConfig {
            on_unlock: Some(format!("echo \"$WARDKEY_EVENT $WARDKEY_USER\" >> {}", out.display())),
            on_lock: None,
            on_switch: Some(format!(
                "echo \"$WARDKEY_EVENT $WARDKEY_USER $WARDKEY_PREVIOUS_USER\" >> {}",
                out.display()
            )),
        });
        assert!(hooks.run(&call(HookEvent::Unlock)).await.unwrap());
        assert!(!hooks.run(&call(HookEvent::Lock)).await.unwrap(), "no hook set");
        let switch = HookCall { event: HookEvent::Switch, user: "bob".into(), previous: Some("alice".into()) };
        assert!(hooks.run(&switch).await.unwrap());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "unlock alice\nswitch bob alice\n");
    }

    #[tokio::test]
    async fn failing_and_hanging_hooks_are_errors_not_panics() {
        let hooks = Hooks::new(HooksConfig {
            on_unlock: Some("echo oops >&2; exit 3".into()),
            on_lock: Some("sleep 10".into()),
            on_switch: Some("/nonexistent/command".into()),
        })
        .with_timeout(Duration::from_millis(200));
        match hooks.run(&call(HookEvent::Unlock)).await {
            Err(HookError::Failed { stderr, status }) => {
                assert_eq!(stderr, "oops");
                assert_eq!(status.code(), Some(3));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(hooks.run(&call(HookEvent::Lock)).await, Err(HookError::TimedOut(_))));
        assert!(matches!(hooks.run(&call(HookEvent::Switch)).await, Err(HookError::Failed { .. })));
        // The runner logs them and carries on.
        let runner = HookRunner::spawn(hooks, CancellationToken::new());
        runner.fire(call(HookEvent::Unlock));
        runner.fire(call(HookEvent::Switch));
    }

    #[tokio::test]
    async fn the_runner_keeps_event_order() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let hooks = Hooks::new(HooksConfig {
            on_unlock: Some(format!("sleep 0.2; echo unlock >> {}", out.display())),
            on_lock: Some(format!("echo lock >> {}", out.display())),
            on_switch: None,
        });
        let runner = HookRunner::spawn(hooks, CancellationToken::new());
        runner.fire(call(HookEvent::Unlock));
        runner.fire(call(HookEvent::Lock));
        for _ in 0..100 {
            if std::fs::read_to_string(&out).is_ok_and(|s| s.lines().count() == 2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "unlock\nlock\n");
    }
}
