//! Redis test servers: a private `redis-server` per test, on a free port of
//! 127.0.0.1, with persistence off and its working directory in a temporary
//! directory.
//!
//! Besides start and stop, a [`TestRedis`] can simulate the two outages a
//! cache client must survive: a server that hangs ([`TestRedis::pause`],
//! SIGSTOP: connections stay open, nothing answers) and a server that goes
//! away and comes back on the same address ([`TestRedis::stop`] and
//! [`TestRedis::start_again`]). [`TestRedis::sentinel`] adds a Redis Sentinel
//! that monitors the server, for testing master discovery.
//!
//! Only std and `tempfile`: signals go through the `kill` command, so no
//! `libc` and no `unsafe`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a starting server may take to answer PING. Generous: the
/// machines that run the tests are shared and often busy.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How many fresh ports a first start tries: another process can take the
/// port between [`crate::free_port`] releasing it and the server binding it.
const PORT_ATTEMPTS: usize = 5;

/// A `redis-server` owned by a test. Dropping it kills the server (even a
/// paused one) and removes its directory.
pub struct TestRedis {
    server: Server,
}

impl TestRedis {
    /// Start a server on a free port and wait until it answers PING.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed (run the README's test command,
    /// `./scripts/test`, which installs it), or if the server does not come
    /// up. A missing binary is never a silent skip, on CI or off it.
    pub fn start() -> TestRedis {
        TestRedis { server: Server::start(Role::Redis, "wardkey-redis-") }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.server.port)
    }

    /// Freeze the server (SIGSTOP). Its port keeps accepting TCP connections
    /// (the kernel completes handshakes) but no command is answered: the
    /// worst kind of outage for a client, one that hangs rather than fails.
    pub fn pause(&mut self) {
        self.server.signal("STOP");
    }

    /// Thaw a paused server (SIGCONT). It then answers what queued up.
    pub fn resume(&mut self) {
        self.server.signal("CONT");
    }

    /// Kill the server (SIGKILL: no shutdown to wait for) and reap it. Its
    /// port then refuses connections.
    pub fn stop(&mut self) {
        self.server.kill();
    }

    /// Start a stopped server again on the same port, with an empty data set
    /// (persistence is off), and wait until it answers PING.
    ///
    /// # Panics
    ///
    /// If the server is still running, or does not come back.
    pub fn start_again(&mut self) {
        assert!(self.server.child.is_none(), "start_again() on a running redis-server: stop() it first");
        if let Err(log) = self.server.spawn_and_wait() {
            panic!("redis-server did not start again on port {}; its log:\n{log}", self.server.port);
        }
    }

    /// Start a Redis Sentinel (`redis-server --sentinel`) that monitors this
    /// server as master `service_name`, with a quorum of 1.
    pub fn sentinel(&self, service_name: &str) -> TestSentinel {
        let role = Role::Sentinel { service_name: service_name.to_owned(), master_port: self.server.port };
        TestSentinel { server: Server::start(role, "wardkey-sentinel-"), service_name: service_name.to_owned() }
    }
}

/// A Redis Sentinel owned by a test (see [`TestRedis::sentinel`]). Dropping
/// it kills the sentinel and removes its directory.
pub struct TestSentinel {
    server: Server,
    service_name: String,
}

impl TestSentinel {
    /// The sentinel's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `redis+sentinel://127.0.0.1:PORT/SERVICE_NAME`, the form
    /// `wardkey_cache::open` accepts.
    pub fn url(&self) -> String {
        format!("redis+sentinel://127.0.0.1:{}/{}", self.server.port, self.service_name)
    }
}

/// What a [`Server`] process runs as.
enum Role {
    Redis,
    Sentinel { service_name: String, master_port: u16 },
}

/// One `redis-server` process (plain or sentinel) and its directory, which
/// holds its log, its data and, for a sentinel, its configuration file.
struct Server {
    role: Role,
    port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl Server {
    /// Create the directory and start on a free port, trying a few ports.
    fn start(role: Role, prefix: &str) -> Server {
        require_redis_server();
        let dir =
            tempfile::Builder::new().prefix(prefix).tempdir().expect("creating a temporary directory for redis-server");
        let mut server = Server { role, port: 0, child: None, dir };
        let mut log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            server.port = crate::free_port();
            match server.spawn_and_wait() {
                Ok(()) => return server,
                // Most likely someone took the port meanwhile: try another.
                Err(e) => log = e,
            }
        }
        panic!("redis-server did not start ({PORT_ATTEMPTS} ports tried); its last log:\n{log}");
    }

    fn args(&self) -> Vec<String> {
        let dir = self.dir.path().display().to_string();
        match &self.role {
            Role::Redis => [
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &dir,
            ]
            .map(String::from)
            .to_vec(),
            Role::Sentinel { service_name, master_port } => {
                // Sentinel insists on a configuration file it can rewrite.
                let conf = self.dir.path().join("sentinel.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndaemonize no\ndir \"{dir}\"\n\
                         sentinel monitor {service_name} 127.0.0.1 {master_port} 1\n",
                        port = self.port,
                    ),
                )
                .expect("writing sentinel.conf");
                vec![conf.display().to_string(), "--sentinel".into()]
            }
        }
    }

    /// Spawn the server and wait until it answers PING. On failure the
    /// process is gone and the error is its log.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("redis.log");
        let log = File::options().create(true).append(true).open(&log_path).expect("creating redis.log");
        let child = Command::new("redis-server")
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning redis-server: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if answers_ping(self.port) {
                return Ok(());
            }
            let exited = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                self.kill();
                return Err(read_log(&log_path));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap_or_else(|| panic!("SIG{signal} to a stopped redis-server")).id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap_or_else(|e| panic!("running `kill -{signal} {pid}`: {e}"));
        assert!(status.success(), "`kill -{signal} {pid}` failed: {status}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL ends a stopped (paused) process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The process first, then `dir` is removed by its own Drop.
        self.kill();
    }
}

/// Panic with instructions when `redis-server` is not installed: a test that
/// needs Redis must fail, never pass by skipping.
fn require_redis_server() {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        panic!(
            "redis-server is not installed{}. Run the README's test command, `./scripts/test`, \
             which installs it (Debian package `redis-server`), or install it yourself.",
            if ci { " on this CI runner" } else { "" }
        );
    }
}

/// Whether a server on `port` answers an inline `PING` with `+PONG`.
fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    let mut got = 0;
    while got < reply.len() {
        match stream.read(&mut reply[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    reply[..got].starts_with(b"+PONG\r\n")
}

/// The end of a server's log, for a failure message.
fn read_log(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log: {e})"));
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
