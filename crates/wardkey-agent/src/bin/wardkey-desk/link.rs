//! The desk's link to the agent's socket: the screens it should draw
//! (`GET /v1/desk/events`), and what it sends back (PINs, "shown").
//!
//! Fails closed: while the agent cannot be reached, the desk draws a locked
//! screen saying so, and retries every second.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio_util::sync::CancellationToken;
use wardkey_agent::broker::BrokerError;
use wardkey_proto::broker::{DeskPin, DeskScreen, DeskShown};
use zeroize::Zeroizing;

/// What the screen sends to the agent.
pub enum ToAgent {
    /// A PIN typed on the pad.
    Pin(Zeroizing<String>),
    /// The desktop shows for screen `seq`.
    Shown(u64),
}

/// What the screen is told.
#[derive(Debug)]
pub enum ToScreen {
    /// The agent's screen.
    Screen(DeskScreen),
    /// The agent cannot be reached (or refuses this desk): stay locked and
    /// show this sentence.
    Lost(String),
    /// A PIN could not be handed over.
    Notice(String),
}

/// Longest wait for a PIN or "shown" to be taken.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for the agent's socket.
pub fn client(agent: &Path) -> reqwest::Client {
    reqwest::Client::builder()
        .unix_socket(agent.to_path_buf())
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("a reqwest client with no TLS settings builds")
}

/// Follow the agent's screens and deliver the desk's messages, until
/// `shutdown`.
pub async fn run(
    agent: PathBuf,
    screen: UnboundedSender<ToScreen>,
    mut from_screen: UnboundedReceiver<ToAgent>,
    shutdown: CancellationToken,
) {
    let client = client(&agent);
    {
        let (client, screen) = (client.clone(), screen.clone());
        tokio::spawn(async move {
            while let Some(message) = from_screen.recv().await {
                if let Some(problem) = send(&client, message).await {
                    let _ = screen.send(ToScreen::Notice(problem));
                }
            }
        });
    }
    let mut said = None;
    loop {
        let lost = follow(&client, &screen).await;
        // Once per outage in the log; the screen says it all along.
        if said.as_ref() != Some(&lost) {
            tracing::warn!(agent = %agent.display(), "{lost}");
            said = Some(lost.clone());
        }
        if screen.send(ToScreen::Lost(lost)).is_err() {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Read `GET /v1/desk/events` until it ends; why it ended, in words.
async fn follow(client: &reqwest::Client, screen: &UnboundedSender<ToScreen>) -> String {
    const NOT_RUNNING: &str = "The Wardkey agent is not running on this PC, so badges cannot be read. \
                               Call the IT service desk.";
    let mut response = match client.get("http://agent/v1/desk/events").send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return refusal(r).await,
        Err(_) => return NOT_RUNNING.into(),
    };
    let mut buffer = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => buffer.extend_from_slice(&chunk),
            Ok(None) | Err(_) => return NOT_RUNNING.into(),
        }
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buffer.drain(..end + 2).collect();
            match parse_event(&event) {
                Ok(Some(parsed)) => {
                    if screen.send(ToScreen::Screen(parsed)).is_err() {
                        return "the screen has closed".into();
                    }
                }
                Ok(None) => {}
                // A screen this desk cannot read might be a lock: cover.
                Err(e) => {
                    return format!(
                        "This lock screen does not understand the Wardkey agent ({e}); \
                         the agent and the lock screen may be different versions. Call the IT service desk."
                    );
                }
            }
        }
        if buffer.len() > 1 << 20 {
            return "the agent sent an event too large to be a screen".into();
        }
    }
}

/// One server-sent event's `data:` as a screen (keep-alives are `None`).
fn parse_event(event: &[u8]) -> Result<Option<DeskScreen>, String> {
    let text = std::str::from_utf8(event).map_err(|e| e.to_string())?;
    let data: String = text.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
    if data.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&data).map(Some).map_err(|e| e.to_string())
}

/// A refusal's sentence.
async fn refusal(response: reqwest::Response) -> String {
    let status = response.status();
    match response.json::<BrokerError>().await {
        Ok(e) => e.message,
        Err(_) => format!("The Wardkey agent answered HTTP {status}. Call the IT service desk."),
    }
}

/// Deliver one message; a sentence for the screen if it was not taken.
async fn send(client: &reqwest::Client, message: ToAgent) -> Option<String> {
    let request = match &message {
        ToAgent::Pin(pin) => client.post("http://agent/v1/pin").json(&DeskPin { pin: pin.to_string() }),
        ToAgent::Shown(seq) => client.post("http://agent/v1/desk/shown").json(&DeskShown { seq: *seq }),
    };
    match request.timeout(POST_TIMEOUT).send().await {
        Ok(r) if r.status().is_success() => None,
        // The verdict on a PIN is the next screen; a refusal here means it
        // was not even checked.
        Ok(r) if matches!(message, ToAgent::Pin(_)) => Some(refusal(r).await),
        Ok(r) => {
            tracing::debug!(status = %r.status(), "the agent did not take the desk's report");
            None
        }
        Err(_) => Some("The Wardkey agent did not answer. Try again.".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_and_keep_alives_do_not() {
        let screen = DeskScreen { seq: 3, workstation: "pc1".into(), ..DeskScreen::default() };
        let event = format!("data: {}\n\n", serde_json::to_string(&screen).unwrap());
        assert_eq!(parse_event(event.as_bytes()), Ok(Some(screen)));
        assert_eq!(parse_event(b":\n\n"), Ok(None));
        assert!(parse_event(b"data: {not json\n\n").is_err(), "a screen it cannot read covers, never skips");
        assert!(parse_event(b"data: {\"seq\":1,\"state\":\"new_state\"}\n\n").is_err());
    }
}
