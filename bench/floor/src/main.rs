//! `roster-floor`: the *floor* Roster is measured against (SPEC.md, "Performance").
//!
//! A bare, unauthenticated WebSocket broadcast server on tokio-tungstenite 0.29 (the same
//! major as axum 0.8's `ws`), tuned as well as we know how, so that any cost Roster adds
//! (sessions, presence, batching, protocol) shows up as a ratio against it in the same run.
//!
//! # Behaviour
//! - Accepts WebSockets at `/users/` on `--bind` (port 0 allowed) and prints
//!   `listening on ADDR` on stdout once bound. Any other path is answered `404`.
//! - **Every text frame a client sends is re-broadcast verbatim to every open socket**
//!   (the sender included). The load generator sends tutorial-shaped frames such as
//!   `{"username":"floor-trigger","is_logged_in":true,"seq":3,"sent_us":1795999999123456}`
//!   and measures delivery latency from `sent_us`. No authentication, no Origin check.
//! - Binary, ping and pong frames are ignored (tungstenite answers pings itself).
//!
//! # Tuning (see /work/shared/STACK-NOTES.md, "WebSocket memory and throughput")
//! - `read_buffer_size = 256 B` (`--read-buffer`): tungstenite's default 128 KiB read buffer
//!   is allocated and zero-filled per socket (~134 KiB RSS per idle socket); 256 B gives
//!   ~2.5-2.8 KB per idle socket.
//! - `write_buffer_size = 4 KiB` (`--write-buffer`): frames are `feed`-ed into the out buffer
//!   and written together; `max_write_buffer_size` bounds it (`--max-write-buffer`, 1 MiB).
//! - **One task per socket**, selecting over its `tokio::sync::broadcast` receiver and the
//!   socket itself (no split, no extra channel, no extra task).
//! - **Each message is serialized once**: the frame's payload is a `Utf8Bytes` (backed by
//!   `Bytes`) shared by every receiver; cloning it is a reference-count increment.
//! - **Feed all queued frames, then one flush**: after a wake-up the task drains every
//!   message already queued in its receiver (`try_recv`) into the write buffer, then flushes
//!   once, so a burst costs a few `write`s per socket, not one per frame.
//! - A receiver that falls more than `--capacity` messages behind loses the oldest ones
//!   (`broadcast` lag); they are counted and reported on stderr every 10 s, and show up as
//!   missing deliveries in the bench. The floor does not resync: it is the floor.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

#[derive(Parser, Debug)]
#[command(version, about = "Bare tuned tokio-tungstenite broadcast server (the benchmark floor)")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Per-socket read buffer in bytes.
    #[arg(long, default_value_t = 256)]
    read_buffer: usize,
    /// Per-socket write buffer in bytes (frames are written once it fills, or on flush).
    #[arg(long, default_value_t = 4096)]
    write_buffer: usize,
    /// Upper bound of a socket's write buffer in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_write_buffer: usize,
    /// Broadcast queue capacity (messages a socket may be behind before losing some).
    #[arg(long, default_value_t = 1024)]
    capacity: usize,
    /// Set TCP_NODELAY on accepted sockets.
    #[arg(long)]
    nodelay: bool,
}

#[derive(Default)]
struct Stats {
    open: AtomicU64,
    accepted: AtomicU64,
    lagged: AtomicU64,
    broadcasts: AtomicU64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.bind).await?;
    println!("listening on {}", listener.local_addr()?);
    let config = WebSocketConfig::default()
        .read_buffer_size(args.read_buffer)
        .write_buffer_size(args.write_buffer)
        .max_write_buffer_size(args.max_write_buffer.max(args.write_buffer + 1))
        .max_message_size(Some(64 << 10))
        .max_frame_size(Some(64 << 10));
    let (tx, _) = broadcast::channel::<Utf8Bytes>(args.capacity);
    let stats = Arc::new(Stats::default());

    let reporter = stats.clone();
    tokio::spawn(async move {
        let mut last_lag = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let lag = reporter.lagged.load(Ordering::Relaxed);
            if lag != last_lag {
                eprintln!(
                    "open={} accepted={} broadcasts={} lagged_frames={}",
                    reporter.open.load(Ordering::Relaxed),
                    reporter.accepted.load(Ordering::Relaxed),
                    reporter.broadcasts.load(Ordering::Relaxed),
                    lag
                );
                last_lag = lag;
            }
        }
    });

    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if args.nodelay {
            let _ = stream.set_nodelay(true);
        }
        let tx = tx.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            stats.accepted.fetch_add(1, Ordering::Relaxed);
            stats.open.fetch_add(1, Ordering::Relaxed);
            let _ = serve_socket(stream, config, tx, &stats).await;
            stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

// The signature is tungstenite's handshake `Callback`; its error type is a whole response.
#[allow(clippy::result_large_err)]
fn only_users_path(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() == "/users/" {
        Ok(resp)
    } else {
        let mut err = ErrorResponse::new(Some("not found".into()));
        *err.status_mut() = StatusCode::NOT_FOUND;
        Err(err)
    }
}

async fn serve_socket(
    stream: TcpStream,
    config: WebSocketConfig,
    tx: broadcast::Sender<Utf8Bytes>,
    stats: &Stats,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    // Subscribe before the handshake completes so nothing sent after it is missed.
    let mut rx = tx.subscribe();
    let mut ws = tokio_tungstenite::accept_hdr_async_with_config(stream, only_users_path, Some(config)).await?;
    loop {
        tokio::select! {
            got = rx.recv() => {
                let first = match got {
                    Ok(m) => m,
                    Err(RecvError::Lagged(n)) => { stats.lagged.fetch_add(n, Ordering::Relaxed); continue; }
                    Err(RecvError::Closed) => break,
                };
                ws.feed(Message::Text(first)).await?;
                loop {
                    match rx.try_recv() {
                        Ok(m) => ws.feed(Message::Text(m)).await?,
                        Err(TryRecvError::Lagged(n)) => { stats.lagged.fetch_add(n, Ordering::Relaxed); }
                        Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
                    }
                }
                ws.flush().await?;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    stats.broadcasts.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(text);
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            }
        }
    }
    Ok(())
}
