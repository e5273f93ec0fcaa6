//! A `roster.v1` client that a test holds open while it does other things: a task of its own
//! reads every frame as it comes and applies it to the client's view (the snapshot, then diffs
//! with consecutive sequence numbers, checked by [`View::apply`]), so a client nobody looks at
//! never falls behind and answers the server's pings. The test reads the view, closes the
//! socket as a closed tab would, or learns how the server closed it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{Browser, TestServer};
use crate::ws_client::{open, View, Ws, V1};

/// How the server ended a held socket: the close code of its close frame, if it sent one.
pub type Ended = Option<u16>;

pub struct Held {
    view: Arc<Mutex<View>>,
    sink: SplitSink<Ws, Message>,
    reader: JoinHandle<Ended>,
}

impl Held {
    /// Opens a `roster.v1` socket on `node` with `browser`'s session.
    pub async fn open(node: &TestServer, browser: &Browser) -> Held {
        let ws = open(node, Some(browser), V1)
            .await
            .unwrap_or_else(|status| panic!("roster.v1 socket on {} refused with {status}", node.addr));
        let (sink, mut stream) = ws.split();
        let view = Arc::new(Mutex::new(View::default()));
        let applied = view.clone();
        let reader = tokio::spawn(async move {
            while let Some(message) = stream.next().await {
                match message {
                    Ok(Message::Text(text)) => {
                        let frame: serde_json::Value = serde_json::from_str(&text).expect("a JSON frame");
                        // A bad frame (a sequence gap, wrong counts) panics here: the test
                        // finds it through `state`.
                        applied.lock().unwrap_or_else(PoisonError::into_inner).apply(&frame);
                    }
                    Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
            None
        });
        Held { view, sink, reader }
    }

    /// Closes the socket as a closed tab does: a close frame, then the connection is dropped.
    /// Does not wait for the server (which may be paused).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.sink.send(Message::Close(None))).await;
        self.reader.abort();
    }

    /// Forgets a socket whose server is gone (killed).
    pub fn forget(self) {
        self.reader.abort();
    }

    /// Who the view says is online and the registered count; Err if the socket has ended or
    /// the view refused a frame.
    pub async fn state(&mut self) -> Result<(BTreeSet<String>, u64), String> {
        if self.reader.is_finished() {
            return Err(match (&mut self.reader).await {
                Ok(ended) => format!("the socket was closed ({ended:?}); view: {:?}", self.view()),
                Err(e) => format!("a frame broke the view: {}", panic_message(e)),
            });
        }
        let view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        Ok((view.online_names(), view.registered_count))
    }

    /// Waits until the view says exactly `online` and `registered`, or fails at `deadline`.
    pub async fn until(
        &mut self,
        online: &BTreeSet<String>,
        registered: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), String> {
        loop {
            let (have, count) = self.state().await?;
            if &have == online && count == registered {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("view {have:?} with {count} registered, want {online:?} with {registered}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the server to end the socket; how it did, or Err at `deadline`.
    pub async fn ended(mut self, deadline: tokio::time::Instant) -> Result<Ended, String> {
        match tokio::time::timeout_at(deadline, &mut self.reader).await {
            Ok(Ok(ended)) => Ok(ended),
            Ok(Err(e)) => Err(format!("a frame broke the view: {}", panic_message(e))),
            Err(_) => {
                self.reader.abort();
                Err(format!("still open; view: {:?}", self.view()))
            }
        }
    }

    fn view(&self) -> String {
        format!("{:?}", self.view.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".to_owned()),
        Err(e) => e.to_string(),
    }
}
