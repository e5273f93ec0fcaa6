//! Serving HTTP/1 on our own accept loop (instead of `axum::serve`, which has no header-read
//! timeout and no connection caps): per-connection timeouts, caps on open connections per
//! client address and in total, WebSocket upgrades, graceful shutdown.
//!
//! # Layout
//! - `caps.rs`: [`ConnectionCaps`]: how many connections are open, in total and per address;
//!   a [`Slot`] is held for a connection's whole life, WebSocket included.
//! - `activity.rs`: what a connection is doing (awaiting headers, busy, idle) and so which
//!   deadline applies; [`Tracked`], the stream wrapper that notices request bytes and holds
//!   the slot.
//! - `serve.rs`: the accept loop and the per-connection task.
//!
//! Knows nothing about routes, sessions or presence: it serves whatever `Router` it is given.

mod activity;
mod caps;
mod serve;

pub use activity::Timeouts;
pub use caps::{default_max_connections, ConnectionCaps, Refused, Slot};
pub use serve::{serve, ServeOptions};
