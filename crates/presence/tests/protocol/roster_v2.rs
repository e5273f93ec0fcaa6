//! roster.v2 windows over a lossy link: the page's view is never silently wrong, re-subscribes
//! after a gap, and ends equal to a fresh snapshot of its window.

use std::collections::VecDeque;

use presence::protocol::views::{PageView, ViewCounts, ViewUser};
use presence::Window;

use super::*;

/// What a page shows: its window's users, and the counts.
type State = (VecDeque<ViewUser>, ViewCounts);

fn shown(v: &PageView) -> State {
    (v.users.clone(), v.counts)
}

struct Case {
    server: Server,
    window: Window,
    /// A page on a perfect link, watching the same window: its view at each seq is the server's.
    reference: (Connection, PageView),
    truth: Truth<State>,
    /// The page on a lossy link, and how often it re-subscribed.
    lossy: (Connection, PageView, Link),
    resubscribes: u32,
}

impl Case {
    fn start(grace_ms: u64, capacity: usize, window: Window, faults: Vec<Fault>) -> Case {
        let mut server = Server::start(grace_ms, capacity);
        let mut watch = |id| {
            server.next_session += 1;
            let session = SessionKey::from(format!("w{}", server.next_session).as_str());
            server.hub.watch(user(id), session, &window).expect("a page's socket opens")
        };
        let reference = (watch(1), PageView::default());
        let lossy = (watch(2), PageView::default(), Link::new(faults));
        Case { server, window, reference, truth: Truth::new(), lossy, resubscribes: 0 }
    }

    async fn observe(&mut self) {
        let (conn, reference) = &mut self.reference;
        for f in frames(conn) {
            if let Err(gap) = reference.apply_text(&f) {
                panic!("the perfect link's page failed: {gap}");
            }
            if reference.live {
                self.truth.at.insert(reference.seq, shown(reference));
            }
        }
        for _ in 0..4 {
            for f in frames(&mut self.lossy.0) {
                for received in self.lossy.2.pass(f) {
                    self.receive(&received);
                }
            }
            if self.lossy.1.live {
                return;
            }
            // What the page does on a gap: ask for its window again, under a new request id.
            let id = self.lossy.1.requested + 1;
            while self.lossy.0.watch(id, &self.window).is_err() {
                // Re-subscribing faster than a person would: the page waits.
                tokio::time::advance(Duration::from_millis(250)).await;
                settle().await;
            }
            self.lossy.1.requested(id);
            self.resubscribes += 1;
        }
    }

    fn receive(&mut self, frame: &[u8]) {
        let view = &mut self.lossy.1;
        let _ = view.apply_text(frame);
        self.truth.check(view.live.then_some(view.seq), shown(view));
    }

    async fn finish(&mut self) {
        for late in self.lossy.2.heal() {
            self.receive(&late);
        }
        self.observe().await;
        // Everything pending goes out (past the grace and a group's interval); then a sign-up
        // changes every window's counts: a frame every page receives.
        for marker in [false, false, true, false, false] {
            if marker {
                self.server.act(&Action::SignUp).await;
            }
            self.server.flush().await;
            self.observe().await;
        }
        let view = &self.lossy.1;
        assert!(view.live, "not live on a perfect link");
        // A page opened now gets the server's window.
        let mut fresh = PageView::default();
        let mut c = self.server.hub.watch(user(3), SessionKey::from("fresh"), &self.window).expect("opens");
        for f in frames(&mut c) {
            fresh.apply_text(&f).expect("a snapshot");
        }
        assert!(fresh.live);
        assert_eq!(shown(view), shown(&fresh));
        assert_eq!(view.seq, fresh.seq);
        assert_eq!(shown(&self.reference.1), shown(&fresh));
    }
}

fn windows() -> impl Strategy<Value = Window> {
    (0u64..6, 1u64..7, prop_oneof![Just(""), Just("user1"), Just("USER"), Just("x")])
        .prop_map(|(offset, limit, q)| Window::new(offset, limit, q).expect("a valid window"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_roster_v2_page_is_right_or_resubscribes(
        actions in actions(),
        faults in faults(),
        window in windows(),
        grace_ms in prop_oneof![Just(0u64), Just(300)],
        capacity in prop_oneof![Just(2usize), Just(1024)],
    ) {
        run(|| async move {
            let mut case = Case::start(grace_ms, capacity, window, faults);
            case.server.flush().await;
            case.observe().await;
            for action in &actions {
                case.server.act(action).await;
                case.observe().await;
            }
            case.finish().await;
        });
    }
}

/// Not vacuous: duplicated frames are gaps to a page, which re-subscribes, and it is checked
/// against the server's window along the way.
#[test]
fn duplicated_diffs_make_the_page_resubscribe() {
    run(|| async {
        let faults = vec![Fault::Deliver, Fault::Duplicate];
        let window = Window::new(0, 6, "").expect("window");
        let mut case = Case::start(0, 1024, window, faults);
        case.server.flush().await;
        case.observe().await;
        for id in FIRST_ACTOR..=ACCOUNTS {
            case.server.act(&Action::Open(id)).await;
            case.server.flush().await;
            case.observe().await;
        }
        case.finish().await;
        assert!(case.resubscribes >= 2, "resubscribes: {}", case.resubscribes);
        assert!(case.truth.checked >= 5, "checked: {}", case.truth.checked);
    });
}
