//! Who is asking on a broker socket, and whether they may.
//!
//! A Unix socket tells the listener who connected (`SO_PEERCRED`: the
//! peer's uid, gid and pid at `connect`), which no TCP port can. Every
//! connection to the agent's socket and to the per-user desktop broker is
//! checked against an allow-list of `user:NAME`, `group:NAME` and
//! `exe:/PATH` entries; the process's own user is always allowed (it can
//! read the workstation key anyway). A caller that matches no entry gets a
//! 403 with a sentence naming what it is, and the refusal is logged.
//!
//! Groups are the peer's primary group and its supplementary groups, read
//! from `/proc/PID/status` (readable for any process). `exe:` needs
//! `/proc/PID/exe`, which the kernel shows only to the same user (or with
//! `CAP_SYS_PTRACE`): it is meant for the per-user broker, where it limits
//! tokens to named EPR programs; where it cannot be read it does not match.

use std::path::{Path, PathBuf};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::UnixListener;

/// One allow-list entry, names resolved at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Uid(u32),
    Gid(u32),
    Exe(PathBuf),
}

/// An allow-list entry that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// Not `user:`, `group:` or `exe:`.
    #[error("entry {0:?} must be user:NAME, group:NAME or exe:/ABSOLUTE/PATH")]
    Shape(String),
    /// The user or group does not exist on this machine.
    #[error("entry {0:?} names no {1} on this machine")]
    Unknown(String, &'static str),
}

/// Who may use a broker socket.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    own_uid: u32,
    /// Whether the own user is allowed whatever the entries say.
    own_always: bool,
    entries: Vec<Entry>,
}

impl PeerPolicy {
    /// The process's own user and `entries` (`user:NAME`, `group:NAME`,
    /// `exe:/PATH`; numeric ids are taken as they are).
    pub fn new(entries: &[String]) -> Result<Self, PolicyError> {
        let entries = entries.iter().map(|e| parse_entry(e)).collect::<Result<_, _>>()?;
        Ok(Self { own_uid: rustix::process::getuid().as_raw(), own_always: true, entries })
    }

    /// Only the process's own user.
    pub fn own_user() -> Self {
        Self { own_uid: rustix::process::getuid().as_raw(), own_always: true, entries: Vec::new() }
    }

    /// With entries, only callers that match one (the own user's other
    /// programs too): how the per-user broker keeps tokens to the EPR
    /// programs IT names. Without entries, still the own user.
    pub fn listed_only(mut self) -> Self {
        self.own_always = self.entries.is_empty();
        self
    }

    /// Whether anyone besides the process's own user may connect: then the
    /// socket must be reachable by them, and this check is what guards it.
    pub fn admits_others(&self) -> bool {
        !self.entries.is_empty()
    }

    /// Whether `peer` may use the broker.
    pub fn allows(&self, peer: &Peer) -> bool {
        let Some(uid) = peer.uid else { return false };
        (self.own_always && uid == self.own_uid)
            || self.entries.iter().any(|entry| match entry {
                Entry::Uid(allowed) => uid == *allowed,
                Entry::Gid(allowed) => peer.groups.contains(allowed),
                Entry::Exe(allowed) => peer.exe.as_deref() == Some(allowed.as_path()),
            })
    }
}

fn parse_entry(entry: &str) -> Result<Entry, PolicyError> {
    let shape = || PolicyError::Shape(entry.to_string());
    let (kind, value) = entry.split_once(':').ok_or_else(shape)?;
    let value = value.trim();
    if value.is_empty() {
        return Err(shape());
    }
    match kind.trim() {
        "user" => match value.parse() {
            Ok(uid) => Ok(Entry::Uid(uid)),
            Err(_) => nix::unistd::User::from_name(value)
                .ok()
                .flatten()
                .map(|u| Entry::Uid(u.uid.as_raw()))
                .ok_or_else(|| PolicyError::Unknown(entry.to_string(), "user")),
        },
        "group" => match value.parse() {
            Ok(gid) => Ok(Entry::Gid(gid)),
            Err(_) => nix::unistd::Group::from_name(value)
                .ok()
                .flatten()
                .map(|g| Entry::Gid(g.gid.as_raw()))
                .ok_or_else(|| PolicyError::Unknown(entry.to_string(), "group")),
        },
        "exe" if Path::new(value).is_absolute() => Ok(Entry::Exe(PathBuf::from(value))),
        _ => Err(shape()),
    }
}

/// The process at the other end of a broker connection, as the kernel
/// reported it when it connected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    /// Its user, if the kernel said.
    pub uid: Option<u32>,
    /// Its process id at `connect`.
    pub pid: Option<i32>,
    /// Its primary and supplementary groups.
    pub groups: Vec<u32>,
    /// Its executable, where this process may read it.
    pub exe: Option<PathBuf>,
}

impl Peer {
    /// Read the peer of `stream`.
    pub fn of(stream: &tokio::net::UnixStream) -> Self {
        let Ok(cred) = stream.peer_cred() else { return Self::default() };
        let pid = cred.pid();
        let mut groups = vec![cred.gid()];
        let mut exe = None;
        if let Some(pid) = pid {
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                groups.extend(supplementary_groups(&status));
            }
            exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        }
        Self { uid: Some(cred.uid()), pid, groups, exe }
    }

    /// The peer in words, for the refusal and the log.
    pub fn describe(&self) -> String {
        let user = match self.uid {
            Some(uid) => nix::unistd::User::from_uid(uid.into())
                .ok()
                .flatten()
                .map(|u| format!("user {} (uid {uid})", u.name))
                .unwrap_or_else(|| format!("uid {uid}")),
            None => "an unknown user".into(),
        };
        let program = match (&self.exe, self.pid) {
            (Some(exe), Some(pid)) => format!(", program {} (pid {pid})", exe.display()),
            (None, Some(pid)) => format!(", pid {pid}"),
            _ => String::new(),
        };
        format!("{user}{program}")
    }
}

/// The `Groups:` line of `/proc/PID/status`.
fn supplementary_groups(status: &str) -> impl Iterator<Item = u32> + '_ {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .into_iter()
        .flat_map(str::split_whitespace)
        .filter_map(|g| g.parse().ok())
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        Self::of(stream.io())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_resolve_names_and_refuse_bad_shapes() {
        let policy = PeerPolicy::new(&["user:root".into(), "group:0".into(), "exe:/usr/bin/epr".into()]).unwrap();
        assert_eq!(policy.entries, [Entry::Uid(0), Entry::Gid(0), Entry::Exe("/usr/bin/epr".into())]);
        assert!(policy.admits_others());
        assert!(!PeerPolicy::own_user().admits_others());
        for bad in ["root", "uid:0", "exe:relative/path", "user:", "group: "] {
            assert_eq!(PeerPolicy::new(&[bad.into()]).unwrap_err(), PolicyError::Shape(bad.into()), "{bad}");
        }
        let err = PeerPolicy::new(&["user:no-such-user-here".into()]).unwrap_err();
        assert_eq!(err.to_string(), "entry \"user:no-such-user-here\" names no user on this machine");
    }

    #[test]
    fn a_peer_matches_by_user_group_or_program_and_nothing_else() {
        let me = rustix::process::getuid().as_raw();
        let other = me.wrapping_add(4242);
        let policy = PeerPolicy::new(&[format!("group:{}", 7777), "exe:/opt/epr/bin/epr".into()]).unwrap();
        let peer = |uid, groups: &[u32], exe: Option<&str>| Peer {
            uid: Some(uid),
            pid: Some(1),
            groups: groups.to_vec(),
            exe: exe.map(PathBuf::from),
        };
        assert!(policy.allows(&peer(me, &[], None)), "the own user is always allowed");
        assert!(policy.allows(&peer(other, &[100, 7777], None)));
        assert!(policy.allows(&peer(other, &[], Some("/opt/epr/bin/epr"))));
        assert!(!policy.allows(&peer(other, &[100], Some("/usr/bin/python3"))));
        assert!(!policy.allows(&Peer::default()), "a peer the kernel could not name is refused");
        assert!(!PeerPolicy::own_user().allows(&peer(other, &[7777], None)));
        let listed = policy.clone().listed_only();
        assert!(!listed.allows(&peer(me, &[], Some("/usr/bin/python3"))), "listed only: the own user's other programs");
        assert!(listed.allows(&peer(me, &[], Some("/opt/epr/bin/epr"))));
        assert!(PeerPolicy::own_user().listed_only().allows(&peer(me, &[], None)));
    }

    #[test]
    fn supplementary_groups_come_from_proc_status() {
        let status = "Name:\tbash\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 27 1000 \nVmPeak:\t1 kB\n";
        assert_eq!(supplementary_groups(status).collect::<Vec<_>>(), [4, 24, 27, 1000]);
        assert_eq!(supplementary_groups("Groups:\n").count(), 0);
    }
}
