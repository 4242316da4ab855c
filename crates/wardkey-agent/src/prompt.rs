//! Where PINs come from, and keeping the terminal from showing secrets.
//!
//! On a terminal the agent turns echo off for as long as it runs: both what
//! a keyboard-wedge reader types (badge UIDs) and the PIN are secrets, and
//! a PIN read by the same thread that reads badges cannot race with it
//! (a second reader of the same terminal, as a password-prompt crate would
//! open, could steal a badge line or the other way round). Echo is switched
//! with `rustix`'s safe termios calls, and restored when the agent stops.
//!
//! When standard input is not a terminal (a script, a test, a service) the
//! PIN is simply the next line, as DESIGN.md describes.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use rustix::termios::{LocalModes, OptionalActions, Termios, tcgetattr, tcsetattr};

use crate::reader::{Lines, ReaderError, ReaderSpec};

/// Standard input as a terminal, with echo off while this lives.
#[derive(Debug)]
pub struct Terminal {
    original: Termios,
}

impl Terminal {
    /// Turn echo off on standard input if it is a terminal (`None` if it
    /// is not, or its settings cannot be read). Line editing stays on, and
    /// Enter still shows as a new line.
    pub fn stdin_without_echo() -> Option<Self> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let original = tcgetattr(stdin.as_fd()).ok()?;
        let mut quiet = original.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        quiet.local_modes.insert(LocalModes::ECHONL);
        if let Err(e) = tcsetattr(stdin.as_fd(), OptionalActions::Now, &quiet) {
            tracing::warn!(error = %e, "cannot turn terminal echo off: badge UIDs and PINs will show");
        }
        Some(Self { original })
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.original);
    }
}

/// Where the agent reads a PIN when the server asks for one.
#[derive(Debug)]
pub struct PinSource {
    from: From,
    terminal: Option<Terminal>,
}

#[derive(Debug)]
enum From {
    /// The badge reader's next line.
    Reader,
    /// A separate source; `None` once it has ended.
    Lines(Option<Lines>),
}

impl PinSource {
    /// The PIN is the next line of the badge reader itself (`--reader stdin`,
    /// or a FIFO when no terminal is attached).
    pub fn reader() -> Self {
        Self { from: From::Reader, terminal: None }
    }

    /// The PIN comes from its own line source (the terminal when badges come
    /// from PC/SC or a FIFO).
    pub fn lines(lines: Lines) -> Self {
        Self { from: From::Lines(Some(lines)), terminal: None }
    }

    /// Show prompts on the terminal, keeping echo off until this is dropped.
    pub fn with_terminal(mut self, terminal: Option<Terminal>) -> Self {
        self.terminal = terminal;
        self
    }

    /// The production choice for a reader: the terminal if there is one,
    /// else the next line of the reader (stdin, FIFO) or of standard input
    /// (PC/SC).
    pub fn for_reader(spec: &ReaderSpec) -> Result<Self, ReaderError> {
        let terminal = Terminal::stdin_without_echo();
        let source = match spec {
            ReaderSpec::Stdin => Self::reader(),
            ReaderSpec::Fifo(_) if terminal.is_none() => Self::reader(),
            ReaderSpec::Fifo(_) | ReaderSpec::Pcsc => Self::lines(Lines::stdin()?),
        };
        Ok(source.with_terminal(terminal))
    }

    /// Whether PINs are the badge reader's next line.
    pub fn is_reader(&self) -> bool {
        matches!(self.from, From::Reader)
    }

    /// Whether a person sees prompts on a terminal.
    pub fn is_terminal(&self) -> bool {
        self.terminal.is_some()
    }

    /// The next line of a separate PIN source; never ready for
    /// [`PinSource::reader`], or once the source has ended.
    pub async fn next_line(&mut self) -> String {
        let From::Lines(Some(lines)) = &mut self.from else {
            return std::future::pending().await;
        };
        match lines.next().await {
            Some(line) => line,
            None => {
                // Under systemd standard input is /dev/null: the lock
                // screen's pad is then where PINs come from.
                tracing::info!("standard input is closed: PINs are taken from the lock screen (wardkey-desk) only");
                self.from = From::Lines(None);
                std::future::pending().await
            }
        }
    }
}
