//! One open page of the soak: its frames applied as its client applies them (roster.v2: the
//! page's own model, `PageView`; roster.v1: snapshot then diffs by `seq`; tutorial: one frame per
//! change), the trigger user's state as the page saw it over time, and the checks at the end:
//! were the trigger's changes delivered, and does the page show the truth.

use presence::protocol::views::{parse_view_frame, view_request, PageView, ViewFrame};
use presence::Window;

use super::ipc::{Change, Deliveries, Truth};
use presence::client::{Frame, Parsed};

use crate::ws::Mode;

/// A change must reach a page within this long (a change followed by no other: else until the
/// change after next). Offline changes wait the server's grace first.
const LAST_CHANGE_WINDOW_US: u64 = 30_000_000;

/// A growable set of user numbers.
#[derive(Default, Clone)]
pub struct Bits(Vec<u64>);

impl Bits {
    pub fn set(&mut self, i: u64, on: bool) {
        let (w, b) = ((i / 64) as usize, 1u64 << (i % 64));
        if w >= self.0.len() {
            if !on {
                return;
            }
            self.0.resize(w + 1, 0);
        }
        if on {
            self.0[w] |= b;
        } else {
            self.0[w] &= !b;
        }
    }
    pub fn get(&self, i: u64) -> bool {
        self.0.get((i / 64) as usize).is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }
    fn clear(&mut self) {
        self.0.iter_mut().for_each(|w| *w = 0);
    }
    fn ones(&self) -> impl Iterator<Item = u64> + '_ {
        self.0
            .iter()
            .enumerate()
            .flat_map(|(w, &bits)| (0..64).filter(move |b| bits & (1u64 << b) != 0).map(move |b| w as u64 * 64 + b))
    }
}

/// Who a username is: the trigger, a soak user `{prefix}{n}`, or someone else.
pub struct Names {
    pub prefix: String,
    pub trigger: String,
}

enum Who {
    Trigger,
    User(u64),
    Other,
}

impl Names {
    fn who(&self, name: &str) -> Who {
        if name == self.trigger {
            return Who::Trigger;
        }
        match name.strip_prefix(self.prefix.as_str()).and_then(|n| n.parse().ok()) {
            Some(n) => Who::User(n),
            None => Who::Other,
        }
    }
    pub fn name(&self, n: u64) -> String {
        format!("{}{n}", self.prefix)
    }
}

/// The truth as a page can be checked against it.
pub struct TruthView {
    online: Bits,
    n_online: u64,
    trigger_online: bool,
    registered: u64,
    /// Page mode: the window's slice of the online users in list order.
    page_names: Vec<String>,
    window: Option<Window>,
}

impl TruthView {
    pub fn new(t: &Truth, names: &Names, window: Option<Window>) -> TruthView {
        let mut online = Bits::default();
        for &n in &t.online {
            online.set(n, true);
        }
        let mut sorted: Vec<String> = t.online.iter().map(|&n| names.name(n)).collect();
        if t.trigger_online {
            sorted.push(names.trigger.clone());
        }
        let n_online = sorted.len() as u64;
        let page_names = match &window {
            Some(w) => {
                let q = w.q.to_lowercase();
                sorted.retain(|n| n.to_lowercase().starts_with(&q));
                sorted.sort_by_key(|n| n.to_lowercase());
                sorted.into_iter().skip(w.offset as usize).take(w.limit as usize).collect()
            }
            None => Vec::new(),
        };
        TruthView { online, n_online, trigger_online: t.trigger_online, registered: t.registered, page_names, window }
    }
}

/// One page's state, from its handshake to its close.
pub struct Page {
    pub mode: Mode,
    pub slow: bool,
    pub opened_us: u64,
    pub frames: u64,
    online: Bits,
    /// Tutorial: the users some frame told about (it knows nothing of the others).
    known: Bits,
    trig: Option<bool>,
    online_count: Option<u64>,
    registered_count: Option<u64>,
    last_seq: Option<u64>,
    seq_gaps: u64,
    snapshots: u64,
    view: Option<Box<PageView>>,
    view_gaps: u64,
    /// (receive time, online) whenever the trigger's state as this page shows it changed.
    trig_events: Vec<(u64, bool)>,
}

impl Page {
    pub fn new(mode: Mode, slow: bool, opened_us: u64) -> Page {
        Page {
            mode,
            slow,
            opened_us,
            frames: 0,
            online: Bits::default(),
            known: Bits::default(),
            trig: None,
            online_count: None,
            registered_count: None,
            last_seq: None,
            seq_gaps: 0,
            snapshots: 0,
            view: (mode == Mode::Page).then(Box::default),
            view_gaps: 0,
            trig_events: Vec::new(),
        }
    }

    fn trigger_seen(&mut self, online: bool, recv: u64) {
        if self.trig != Some(online) {
            self.trig = Some(online);
            self.trig_events.push((recv, online));
        }
    }

    /// Applies one text frame. Returns the view request to send after a gap (roster.v2: the
    /// page re-subscribes, it never guesses).
    pub fn on_text(&mut self, names: &Names, window: Option<&Window>, text: &str, recv: u64) -> Option<String> {
        self.frames += 1;
        match self.mode {
            Mode::Page => self.on_view_frame(names, window, text, recv),
            _ => {
                self.on_stream_frame(names, text, recv);
                None
            }
        }
    }

    fn on_view_frame(&mut self, names: &Names, window: Option<&Window>, text: &str, recv: u64) -> Option<String> {
        let view = self.view.get_or_insert_with(Box::default);
        let frame = match parse_view_frame(text.as_bytes()) {
            Ok(ViewFrame::Error { .. }) | Err(_) => None,
            Ok(f) => Some(f),
        };
        let mut resubscribe = None;
        match frame.map(|f| view.apply(f)) {
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                self.view_gaps += 1;
                let id = view.requested + 1;
                view.requested(id);
                resubscribe = window.map(|w| view_request(id, w));
            }
        }
        if view.live {
            let online = view.users.iter().any(|u| u.online && u.username == names.trigger);
            self.trigger_seen(online, recv);
        }
        resubscribe
    }

    fn on_stream_frame(&mut self, names: &Names, text: &str, recv: u64) {
        let Ok(frame) = serde_json::from_str::<Frame>(text) else { return };
        if frame.online_count.is_some() {
            self.online_count = frame.online_count;
            self.registered_count = frame.registered_count;
        }
        match frame.parsed() {
            Parsed::Snapshot { seq, online } => {
                self.snapshots += 1;
                self.last_seq = Some(seq);
                self.online.clear();
                let mut trig = false;
                for name in online {
                    match names.who(name) {
                        Who::Trigger => trig = true,
                        Who::User(n) => self.online.set(n, true),
                        Who::Other => {}
                    }
                }
                self.trigger_seen(trig, recv);
            }
            Parsed::Changes { seq, changes } => {
                if let (Some(seq), Some(last)) = (seq, self.last_seq) {
                    if seq != last + 1 {
                        self.seq_gaps += 1;
                    }
                }
                if seq.is_some() {
                    self.last_seq = seq;
                }
                for c in changes {
                    match names.who(c.username) {
                        Who::Trigger => self.trigger_seen(c.online, recv),
                        Who::User(n) => {
                            self.online.set(n, c.online);
                            self.known.set(n, true);
                        }
                        Who::Other => {}
                    }
                }
            }
            Parsed::Other => {}
        }
    }

    /// Whether the page shows the truth; if not, what differs first.
    pub fn check(&self, t: &TruthView) -> Result<(), String> {
        match self.mode {
            Mode::Page => self.check_view(t),
            Mode::V1 => {
                let (mine, truth) = (self.online.ones().count() as u64, t.online.ones().count() as u64);
                if let Some(n) = self.online.ones().find(|&n| !t.online.get(n)) {
                    return Err(format!("v1 shows {n} online, it is not ({mine} vs {truth})"));
                }
                if let Some(n) = t.online.ones().find(|&n| !self.online.get(n)) {
                    return Err(format!("v1 misses {n} online ({mine} vs {truth})"));
                }
                if self.trig.unwrap_or(false) != t.trigger_online {
                    return Err(format!("v1 shows the trigger online={:?}", self.trig));
                }
                if (self.online_count, self.registered_count) != (Some(t.n_online), Some(t.registered)) {
                    return Err(format!(
                        "v1 counts {:?}/{:?}, truth {}/{}",
                        self.online_count, self.registered_count, t.n_online, t.registered
                    ));
                }
                Ok(())
            }
            _ => {
                if let Some(n) = self.known.ones().find(|&n| self.online.get(n) != t.online.get(n)) {
                    return Err(format!("tutorial shows {n} online={}, truth {}", self.online.get(n), t.online.get(n)));
                }
                if self.trig.is_some_and(|on| on != t.trigger_online) {
                    return Err(format!("tutorial shows the trigger online={:?}", self.trig));
                }
                Ok(())
            }
        }
    }

    fn check_view(&self, t: &TruthView) -> Result<(), String> {
        let v = self.view.as_deref().ok_or("no view")?;
        if !v.live {
            return Err("page not live (waiting for a snapshot)".into());
        }
        let c = v.counts;
        if (c.online_count, c.registered_count) != (t.n_online, t.registered) {
            return Err(format!(
                "page counts {}/{}, truth {}/{}",
                c.online_count, c.registered_count, t.n_online, t.registered
            ));
        }
        let n = t.page_names.len();
        for (i, (u, name)) in v.users.iter().zip(&t.page_names).enumerate() {
            if !u.online || u.username != *name {
                return Err(format!("page row {i}: {} online={}, truth {name} online", u.username, u.online));
            }
        }
        if v.users.len() < n {
            return Err(format!("page holds {} rows, truth has {n} online in it", v.users.len()));
        }
        if let Some(u) = v.users.iter().skip(n).find(|u| u.online) {
            return Err(format!("page shows {} online after the online part", u.username));
        }
        if let Some(w) = t.window.as_ref().filter(|w| w.q.is_empty()) {
            let rows = (w.limit as u64).min(c.total.saturating_sub(w.offset as u64));
            if c.total != t.registered || v.users.len() as u64 != rows {
                return Err(format!("page total {} rows {}, truth {} accounts", c.total, v.users.len(), t.registered));
            }
        }
        Ok(())
    }

    /// Adds this page's lifetime (from its handshake to `closed_us`) to `out`: each trigger change
    /// made while it was open, and open long enough to deliver it (until the next change), is
    /// expected, and delivered by the first time the page showed that state within
    /// `[t_k, t_{k+2})`.
    pub fn evaluate(&self, changes: &[Change], closed_us: u64, out: &mut Deliveries) {
        out.lifetimes += 1;
        out.frames += self.frames;
        out.seq_gaps += self.seq_gaps;
        out.view_gaps += self.view_gaps;
        let snapshots = self.view.as_ref().map_or(self.snapshots, |v| v.snapshots);
        out.resyncs += snapshots.saturating_sub(1);
        for (k, c) in changes.iter().enumerate() {
            if c.t_us <= self.opened_us {
                continue;
            }
            let due = changes.get(k + 1).map_or(c.t_us + LAST_CHANGE_WINDOW_US, |n| n.t_us);
            if closed_us < due {
                continue;
            }
            out.expected += 1;
            let end = changes.get(k + 2).map_or(u64::MAX, |n| n.t_us);
            match self.trig_events.iter().find(|(t, on)| *t >= c.t_us && *t < end && *on == c.online) {
                Some((t, _)) => {
                    out.delivered += 1;
                    let hist = if c.online { &mut out.online_ms } else { &mut out.offline_ms };
                    *hist.entry((t - c.t_us) / 1000).or_default() += 1;
                }
                None => {
                    out.missing += 1;
                    if out.examples.len() < 5 {
                        out.examples.push(format!(
                            "{:?} page opened at {} missed change {k} (online={}) at {}",
                            self.mode, self.opened_us, c.online, c.t_us
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names { prefix: "bench".into(), trigger: "bench".into() }
    }

    #[test]
    fn a_v1_page_follows_snapshot_and_diffs_and_counts_a_gap() {
        let mut p = Page::new(Mode::V1, false, 0);
        let n = names();
        p.on_text(&n, None, r#"{"type":"snapshot","seq":3,"online":[{"id":1,"username":"bench1"}],"online_count":1,"registered_count":5}"#, 10);
        p.on_text(&n, None, r#"{"type":"diff","seq":4,"online":[{"id":9,"username":"bench"}],"offline":[{"id":1,"username":"bench1"}],"online_count":1,"registered_count":5}"#, 20);
        let truth = Truth { online: vec![], trigger_online: true, registered: 5 };
        assert_eq!(p.check(&TruthView::new(&truth, &n, None)), Ok(()));
        let wrong = Truth { online: vec![1], trigger_online: true, registered: 5 };
        assert!(p.check(&TruthView::new(&wrong, &n, None)).is_err());
        p.on_text(
            &n,
            None,
            r#"{"type":"diff","seq":6,"online":[],"offline":[],"online_count":1,"registered_count":5}"#,
            30,
        );
        let mut d = Deliveries::default();
        p.evaluate(&[Change { t_us: 15, online: true }], 40_000_000, &mut d);
        assert_eq!((d.expected, d.delivered, d.missing, d.seq_gaps), (1, 1, 0, 1));
    }

    #[test]
    fn a_change_the_page_never_showed_is_missing_and_one_after_it_closed_is_not_expected() {
        let mut p = Page::new(Mode::Tutorial, false, 100);
        let n = names();
        p.on_text(&n, None, r#"{"username":"bench","is_logged_in":true}"#, 200);
        let changes = [
            Change { t_us: 150, online: true },
            Change { t_us: 300, online: false },
            Change { t_us: 500, online: true },
        ];
        let mut d = Deliveries::default();
        p.evaluate(&changes, 450, &mut d);
        // Change 0 delivered at 200; change 1 missed (open until 450 >= 500? no: not due); so
        // only change 0 is expected.
        assert_eq!((d.expected, d.delivered, d.missing), (1, 1, 0));
        let mut d = Deliveries::default();
        p.evaluate(&changes, 600, &mut d);
        assert_eq!((d.expected, d.delivered, d.missing), (2, 1, 1));
    }
}
