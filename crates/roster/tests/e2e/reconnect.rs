//! The page script's reconnect delays, computed by the real `roster.js` in Chromium on the live
//! list: full jitter (uniform in [0, min(30 s, 0.5 s * 2^attempt))), and after a close that every
//! page of a node gets at once (1001: the node stops; 1006: it died) the first attempt spread
//! over the window the server gives the page (half the presence grace). 10,000 draws per case
//! stand in for 10,000 pages; the test checks where they land, bucket by bucket.

use serde_json::{json, Value};

use crate::browser::Driver;
use crate::helpers::TestServer;
use crate::{base, create_account, log_in};

const SAMPLES: usize = 10_000;

/// `SAMPLES` delays from the page's own `roster.reconnectDelay`.
async fn delays(b: &crate::browser::Browser, attempt: u32, code: u16, spread_ms: f64) -> Vec<f64> {
    let script = "const [attempt, code, spread, n] = arguments; const out = [];
        for (let i = 0; i < n; i++) out.push(window.roster.reconnectDelay(attempt, code, spread, Math.random));
        return out;";
    let out = b.js(script, vec![json!(attempt), json!(code), json!(spread_ms), json!(SAMPLES)]).await;
    out.as_array().expect("an array").iter().map(|v| v.as_f64().expect("a number")).collect()
}

/// The draws cover [0, window) evenly: all inside it, its both ends reached, and no tenth of it
/// holding more or less than its share by a margin (a burst would put most of them in one).
fn assert_spread(what: &str, d: &[f64], window: f64) {
    let (min, max) = d.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    assert!(min >= 0.0 && max < window, "{what}: delays in [{min}, {max}], not within [0, {window})");
    assert!(min < window * 0.01 && max > window * 0.99, "{what}: [{min}, {max}] does not cover [0, {window})");
    let mut buckets = [0usize; 10];
    for &x in d {
        buckets[((x / window * 10.0) as usize).min(9)] += 1;
    }
    // Each tenth expects 1,000 of 10,000 (sd 30): 850..1150 is 5 sd either way.
    assert!(buckets.iter().all(|&n| (850..=1150).contains(&n)), "{what}: tenths of the window hold {buckets:?}");
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    assert!((mean - window / 2.0).abs() < window * 0.02, "{what}: mean {mean} for a window of {window}");
}

#[tokio::test]
async fn reconnects_after_a_node_stops_are_spread_over_the_window() {
    // A 4 s grace: the page is told to spread over 2 s.
    let server = TestServer::start_with(&["--presence-grace", "4s"]).await;
    create_account(&server, "alice").await;
    let driver = Driver::start().await;
    let a = driver.browser("A").await;
    log_in(&a, &base(&server), "alice").await;
    let spread = a.js("return document.getElementById('users').dataset.reconnectSpreadMs;", vec![]).await;
    assert_eq!(spread, Value::from("2000"), "the server's window: half the grace");

    // A node stopping (1001) or dying (1006): the first attempt is spread over the 2 s.
    assert_spread("after 1001", &delays(&a, 0, 1001, 2000.0).await, 2000.0);
    assert_spread("after 1006", &delays(&a, 0, 1006, 2000.0).await, 2000.0);
    // One page's own trouble (1011: a server error on that socket) starts at the first step.
    assert_spread("first retry after 1011", &delays(&a, 0, 1011, 2000.0).await, 500.0);
    // Later attempts double the window, up to the 30 s cap, whatever the close was.
    assert_spread("fourth retry", &delays(&a, 3, 1006, 2000.0).await, 4000.0);
    assert_spread("eleventh retry", &delays(&a, 10, 1001, 2000.0).await, 30_000.0);
    // No grace: nothing to spread over, the ordinary first step.
    assert_spread("no grace", &delays(&a, 0, 1001, 0.0).await, 500.0);
    a.assert_clean_console().await;
    a.close().await;
}
