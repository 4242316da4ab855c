//! Badge readers: where taps come from, as a stream of clean text lines.
//!
//! - `stdin`: keyboard-wedge readers type the UID and Enter; one line is one
//!   read. Also what tests and scripts use.
//! - `fifo:PATH`: lines from a named pipe that a reader daemon writes; the
//!   pipe is reopened whenever its writer goes away.
//! - `pcsc`: contactless card UIDs over PC/SC (cargo feature `pcsc`); a
//!   FIDO2 card or key is kept for CTAP2 and read as the line `fido2`.
//!
//! Each source runs on its own OS thread (blocking reads of a terminal, a
//! FIFO or PC/SC cannot be cancelled, and a detached thread never holds up
//! shutdown) and hands lines to the agent over a channel. Nothing a reader
//! sends can crash the agent: empty lines, control characters, overlong
//! lines and invalid UTF-8 are dropped with a log line that never shows the
//! content (it may be a badge UID or a PIN).
//!
//! [`Debouncer`] folds the repeats of a card held on a reader into one tap.

#[cfg(feature = "pcsc")]
mod pcsc;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::fido2::ctap2::CardSlot;

/// Longest line accepted. Badge UIDs are at most a few dozen characters and
/// PINs at most 64; anything longer is a stuck key or garbage.
pub const MAX_LINE_BYTES: usize = 256;

/// Lines queued between a reader thread and the agent.
const CHANNEL_CAPACITY: usize = 32;

/// Which reader to use (`reader` in agent.toml, `--reader`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ReaderSpec {
    /// One UID per line on standard input.
    Stdin,
    /// A PC/SC contactless reader.
    Pcsc,
    /// Lines from a named pipe.
    Fifo(PathBuf),
}

impl std::str::FromStr for ReaderSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdin" => Ok(Self::Stdin),
            "pcsc" => Ok(Self::Pcsc),
            _ => match s.strip_prefix("fifo:") {
                Some(path) if !path.is_empty() => Ok(Self::Fifo(path.into())),
                _ => Err(format!("reader must be stdin, pcsc or fifo:PATH, not {s:?}")),
            },
        }
    }
}

impl TryFrom<String> for ReaderSpec {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ReaderSpec> for String {
    fn from(r: ReaderSpec) -> Self {
        r.to_string()
    }
}

impl std::fmt::Display for ReaderSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stdin => f.write_str("stdin"),
            Self::Pcsc => f.write_str("pcsc"),
            Self::Fifo(p) => write!(f, "fifo:{}", p.display()),
        }
    }
}

/// A reader that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// `fifo:PATH` names nothing.
    #[error("{0} does not exist: create the named pipe first (mkfifo)")]
    NoSuchFifo(PathBuf),
    /// `fifo:PATH` names something else than a named pipe.
    #[error("{0} is not a named pipe (a FIFO made with mkfifo)")]
    NotAFifo(PathBuf),
    /// `--reader pcsc` on a build without PC/SC.
    #[error(
        "this wardkey-agent was built without PC/SC support: rebuild with `cargo build --features pcsc` \
         (needs libpcsclite-dev), or use --reader stdin or fifo:PATH"
    )]
    PcscNotBuilt,
    /// PC/SC could not start (pcscd not running, no reader).
    #[error("PC/SC: {0}")]
    Pcsc(String),
    /// The reader thread could not start.
    #[error("cannot start the badge reader thread: {0}")]
    Thread(std::io::Error),
}

/// Why a line was dropped. Never carries the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadLine {
    /// Nothing but whitespace.
    #[error("empty line")]
    Empty,
    /// Longer than [`MAX_LINE_BYTES`].
    #[error("line longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
    /// Not UTF-8.
    #[error("line is not valid UTF-8")]
    NotUtf8,
    /// Has control characters (escape sequences, NUL, stray keys).
    #[error("line has control characters")]
    Control,
}

/// The text of one raw line (without its `\n`), or why it is unusable.
/// Surrounding whitespace (a wedge's `\r`, padding) is trimmed.
pub fn clean_line(raw: &[u8]) -> Result<String, BadLine> {
    if raw.len() > MAX_LINE_BYTES + 1 {
        return Err(BadLine::TooLong);
    }
    let text = std::str::from_utf8(raw).map_err(|_| BadLine::NotUtf8)?;
    let text = text.trim_matches(|c: char| c.is_whitespace());
    if text.is_empty() {
        return Err(BadLine::Empty);
    }
    if text.len() > MAX_LINE_BYTES {
        return Err(BadLine::TooLong);
    }
    if text.chars().any(char::is_control) {
        return Err(BadLine::Control);
    }
    Ok(text.to_string())
}

/// Read one line into `buf` (cleared first, `\n` dropped) without ever
/// holding more than `max` bytes, however long the line. Returns `None` at
/// end of input, else whether the line was longer than `max` (then `buf`
/// is empty and the whole line was skipped).
pub fn read_bounded_line(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut overlong = false;
    let mut read_any = false;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(read_any.then_some(overlong));
        }
        read_any = true;
        let (content, used, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        if !overlong {
            if buf.len() + content.len() > max {
                overlong = true;
                buf.clear();
            } else {
                buf.extend_from_slice(content);
            }
        }
        r.consume(used);
        if done {
            return Ok(Some(overlong));
        }
    }
}

/// Clean lines from a reader, in order.
#[derive(Debug)]
pub struct Lines {
    rx: mpsc::Receiver<String>,
}

impl Lines {
    /// Lines that a test (or another part of a program) sends itself.
    pub fn channel() -> (mpsc::Sender<String>, Lines) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        (tx, Lines { rx })
    }

    /// The next line; `None` once the source has ended for good.
    pub async fn next(&mut self) -> Option<String> {
        self.rx.recv().await
    }

    /// Lines of any blocking byte source, read on their own thread; the
    /// source ends at its end of input.
    pub fn from_reader<R: BufRead + Send + 'static>(name: &'static str, reader: R) -> Result<Lines, ReaderError> {
        let (tx, lines) = Self::channel();
        spawn_thread(name, move || {
            if pump(name, reader, &tx) == PumpEnd::Eof {
                tracing::info!(reader = name, "the badge reader reached the end of its input");
            }
        })?;
        Ok(lines)
    }

    /// Lines typed or piped on standard input.
    pub fn stdin() -> Result<Lines, ReaderError> {
        let (tx, lines) = Self::channel();
        spawn_thread("stdin", move || {
            let stdin = std::io::stdin();
            if pump("stdin", stdin.lock(), &tx) == PumpEnd::Eof {
                tracing::info!("standard input reached its end");
            }
        })?;
        Ok(lines)
    }

    /// Lines from the named pipe at `path`, reopened each time its writer
    /// closes it, for as long as the agent runs.
    pub fn fifo(path: PathBuf) -> Result<Lines, ReaderError> {
        match std::fs::metadata(&path) {
            Err(_) => return Err(ReaderError::NoSuchFifo(path)),
            Ok(m) if !m.file_type().is_fifo() => return Err(ReaderError::NotAFifo(path)),
            Ok(_) => {}
        }
        let (tx, lines) = Self::channel();
        spawn_thread("fifo", move || fifo_loop(&path, &tx))?;
        Ok(lines)
    }

    /// Start the reader `spec` names. A PC/SC reader puts FIDO2 cards in
    /// `cards` (and sends the line `fido2`) instead of reading their UID.
    pub fn spawn(spec: &ReaderSpec, cards: &CardSlot) -> Result<Lines, ReaderError> {
        #[cfg(not(feature = "pcsc"))]
        let _ = cards;
        match spec {
            ReaderSpec::Stdin => Self::stdin(),
            ReaderSpec::Fifo(path) => Self::fifo(path.clone()),
            #[cfg(feature = "pcsc")]
            ReaderSpec::Pcsc => {
                let (tx, lines) = Self::channel();
                pcsc::spawn(tx, cards.clone())?;
                Ok(lines)
            }
            #[cfg(not(feature = "pcsc"))]
            ReaderSpec::Pcsc => Err(ReaderError::PcscNotBuilt),
        }
    }
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), ReaderError> {
    std::thread::Builder::new().name(format!("wardkey-reader-{name}")).spawn(f).map(drop).map_err(ReaderError::Thread)
}

/// How a [`pump`] ended.
#[derive(Debug, PartialEq, Eq)]
enum PumpEnd {
    /// End of input.
    Eof,
    /// The agent stopped listening.
    Closed,
    /// A read failed.
    Failed,
}

/// Send the clean lines of `reader` to `tx` until it ends.
fn pump(name: &str, mut reader: impl BufRead, tx: &mpsc::Sender<String>) -> PumpEnd {
    let mut buf = Vec::with_capacity(MAX_LINE_BYTES);
    loop {
        match read_bounded_line(&mut reader, &mut buf, MAX_LINE_BYTES) {
            Ok(None) => return PumpEnd::Eof,
            Ok(Some(overlong)) => {
                let line = if overlong { Err(BadLine::TooLong) } else { clean_line(&buf) };
                match line {
                    Ok(line) => {
                        if tx.blocking_send(line).is_err() {
                            return PumpEnd::Closed;
                        }
                    }
                    Err(BadLine::Empty) => {
                        tracing::debug!(reader = name, "skipped an empty line from the badge reader")
                    }
                    Err(why) => tracing::warn!(reader = name, %why, "skipped a line from the badge reader"),
                }
            }
            Err(e) => {
                tracing::warn!(reader = name, error = %e, "reading the badge reader failed");
                return PumpEnd::Failed;
            }
        }
    }
}

fn fifo_loop(path: &std::path::Path, tx: &mpsc::Sender<String>) {
    let mut failing = false;
    loop {
        if tx.is_closed() {
            return;
        }
        // Opening a FIFO for reading blocks until a writer opens it.
        match std::fs::File::open(path) {
            Ok(file) => {
                failing = false;
                match pump("fifo", BufReader::new(file), tx) {
                    PumpEnd::Closed => return,
                    PumpEnd::Eof => tracing::debug!(path = %path.display(), "the FIFO's writer closed it; reopening"),
                    PumpEnd::Failed => std::thread::sleep(Duration::from_secs(1)),
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(path = %path.display(), error = %e, "cannot open the badge FIFO; retrying every second");
                    failing = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Folds repeated reads of one card into one tap: a keyboard-wedge reader
/// types the UID again and again while the card lies on it, and a clinician
/// should not lock the screen they just unlocked by holding the badge a
/// moment too long. The window slides: each repeat extends it.
#[derive(Clone)]
pub struct Debouncer {
    window: Duration,
    last: Option<(String, Instant)>,
}

impl std::fmt::Debug for Debouncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Debouncer").field("window", &self.window).finish_non_exhaustive()
    }
}

impl Debouncer {
    /// Reads of the same UID less than `window` apart are one tap.
    pub fn new(window: Duration) -> Self {
        Self { window, last: None }
    }

    /// Whether the read of `uid` at `now` is a new tap (true) or a repeat.
    pub fn accept(&mut self, uid: &str, now: Instant) -> bool {
        let repeat = self.is_repeat(uid, now);
        self.last = Some((uid.to_string(), now));
        !repeat
    }

    /// Whether `uid` at `now` would be a repeat, without counting it as a
    /// read.
    pub fn is_repeat(&self, uid: &str, now: Instant) -> bool {
        matches!(&self.last, Some((last, at)) if last == uid && now.saturating_duration_since(*at) < self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn lines_of(input: &[u8]) -> Vec<Result<String, BadLine>> {
        let mut r = Cursor::new(input.to_vec());
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(overlong) = read_bounded_line(&mut r, &mut buf, MAX_LINE_BYTES).unwrap() {
            out.push(if overlong { Err(BadLine::TooLong) } else { clean_line(&buf) });
        }
        out
    }

    #[test]
    fn garbage_lines_are_skipped_and_good_ones_kept() {
        let mut input = Vec::new();
        input.extend_from_slice(b"04A1B2C3\n");
        input.extend_from_slice(b"\n");
        input.extend_from_slice(b"   \r\n");
        input.extend_from_slice(b"04\x1b[2~A1\n");
        input.extend_from_slice(b"ab\x00cd\n");
        input.extend_from_slice(b"\xff\xfe\xfd\n");
        input.extend_from_slice(&[b'7'; 10_000]);
        input.extend_from_slice(b"\n");
        input.extend_from_slice(b"04D5E6F7\r\n");
        input.extend_from_slice(b"  1234  \n");
        input.extend_from_slice(b"last-without-newline");
        assert_eq!(
            lines_of(&input),
            vec![
                Ok("04A1B2C3".into()),
                Err(BadLine::Empty),
                Err(BadLine::Empty),
                Err(BadLine::Control),
                Err(BadLine::Control),
                Err(BadLine::NotUtf8),
                Err(BadLine::TooLong),
                Ok("04D5E6F7".into()),
                Ok("1234".into()),
                Ok("last-without-newline".into()),
            ]
        );
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_kept() {
        let mut input = vec![b'A'; MAX_LINE_BYTES];
        input.push(b'\n');
        input.extend(vec![b'B'; MAX_LINE_BYTES + 1]);
        input.push(b'\n');
        let got = lines_of(&input);
        assert_eq!(got[0].as_ref().map(String::len), Ok(MAX_LINE_BYTES));
        assert_eq!(got[1], Err(BadLine::TooLong));
    }

    #[test]
    fn overlong_lines_are_never_buffered_whole() {
        // A reader with a tiny internal buffer: the line arrives in pieces.
        let data = [vec![b'x'; 1_000_000], b"\nok\n".to_vec()].concat();
        let mut r = BufReader::with_capacity(64, Cursor::new(data));
        let mut buf = Vec::new();
        assert_eq!(read_bounded_line(&mut r, &mut buf, MAX_LINE_BYTES).unwrap(), Some(true));
        assert!(buf.capacity() <= 4 * MAX_LINE_BYTES, "buffer grew to {}", buf.capacity());
        assert_eq!(read_bounded_line(&mut r, &mut buf, MAX_LINE_BYTES).unwrap(), Some(false));
        assert_eq!(buf, b"ok");
        assert_eq!(read_bounded_line(&mut r, &mut buf, MAX_LINE_BYTES).unwrap(), None);
    }

    #[tokio::test]
    async fn a_reader_thread_delivers_only_clean_lines_then_ends() {
        let input = b"\xff\n04A1\n\x07\n\n04B2\n".to_vec();
        let mut lines = Lines::from_reader("test", Cursor::new(input)).unwrap();
        assert_eq!(lines.next().await.as_deref(), Some("04A1"));
        assert_eq!(lines.next().await.as_deref(), Some("04B2"));
        assert_eq!(lines.next().await, None);
    }

    #[tokio::test]
    async fn fifo_is_reopened_after_each_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("badges");
        let status = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(status.success());
        let mut lines = Lines::fifo(path.clone()).unwrap();
        for uid in ["04AA", "04BB"] {
            let p = path.clone();
            // Each writer opens, writes one line and closes: EOF for the reader.
            tokio::task::spawn_blocking(move || std::fs::write(p, format!("{uid}\n")).unwrap());
            let got = tokio::time::timeout(Duration::from_secs(5), lines.next()).await.unwrap();
            assert_eq!(got.as_deref(), Some(uid));
        }
    }

    #[test]
    fn fifo_paths_are_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Lines::fifo(dir.path().join("none")), Err(ReaderError::NoSuchFifo(_))));
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(Lines::fifo(file), Err(ReaderError::NotAFifo(_))));
    }

    #[cfg(not(feature = "pcsc"))]
    #[test]
    fn pcsc_without_the_feature_is_a_clear_error() {
        let err = Lines::spawn(&ReaderSpec::Pcsc, &CardSlot::default()).unwrap_err();
        assert!(matches!(err, ReaderError::PcscNotBuilt));
        assert!(err.to_string().contains("--features pcsc"), "{err}");
    }

    #[test]
    fn reader_specs_parse() {
        assert_eq!("stdin".parse::<ReaderSpec>().unwrap(), ReaderSpec::Stdin);
        assert_eq!("pcsc".parse::<ReaderSpec>().unwrap(), ReaderSpec::Pcsc);
        assert_eq!("fifo:/run/b".parse::<ReaderSpec>().unwrap(), ReaderSpec::Fifo("/run/b".into()));
        assert!("fifo:".parse::<ReaderSpec>().is_err());
        assert!("usb".parse::<ReaderSpec>().is_err());
        assert_eq!(ReaderSpec::Fifo("/x".into()).to_string(), "fifo:/x");
    }

    #[test]
    fn repeats_within_the_window_are_one_tap() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debouncer::new(ms(1500));
        assert!(d.accept("A", t0));
        assert!(!d.accept("A", t0 + ms(300)));
        // The window slides with each repeat: a card held on a wedge reader.
        assert!(!d.accept("A", t0 + ms(1700)));
        assert!(!d.accept("A", t0 + ms(3100)));
        // Lifted and tapped again later: a new tap.
        assert!(d.accept("A", t0 + ms(4700)));
        // Another badge is never a repeat.
        assert!(d.accept("B", t0 + ms(4800)));
        assert!(d.accept("A", t0 + ms(4900)));
        assert!(d.is_repeat("A", t0 + ms(5000)));
        assert!(!d.is_repeat("B", t0 + ms(5000)));
    }

    #[tokio::test(start_paused = true)]
    async fn debounce_follows_tokio_time() {
        let mut d = Debouncer::new(Duration::from_millis(1500));
        assert!(d.accept("A", Instant::now()));
        tokio::time::advance(Duration::from_millis(1499)).await;
        assert!(!d.accept("A", Instant::now()));
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(d.accept("A", Instant::now()));
    }
}
