//! roster.v1 over a lossy link: a client is never silently wrong, and ends right.

use presence::client::ClientView;
use presence::Snapshot;

use super::*;

/// What a client shows: who is online, and the counts.
type State = (BTreeMap<UserId, Arc<str>>, u64, u64);

fn shown(v: &ClientView) -> State {
    (v.online.clone(), v.online_count, v.registered_count)
}

fn of_snapshot(s: &Snapshot) -> State {
    (s.online.iter().map(|u| (u.id, u.username.clone())).collect(), s.online_count, s.registered_count)
}

/// One client on a lossy link, and the server's list at every `seq` seen so far.
struct Case {
    server: Server,
    /// A client on a perfect link: its list at each seq is the server's.
    reference: (Connection, ClientView),
    truth: Truth<State>,
    /// The client on a lossy link, and how often it reconnected.
    lossy: (Connection, ClientView, Link),
    reconnects: u32,
}

impl Case {
    fn start(grace_ms: u64, capacity: usize, faults: Vec<Fault>) -> Case {
        let mut server = Server::start(grace_ms, capacity);
        let reference = (server.connect(1, Protocol::RosterV1), ClientView::default());
        let lossy = (server.connect(2, Protocol::RosterV1), ClientView::default(), Link::new(faults));
        Case { server, reference, truth: Truth::new(), lossy, reconnects: 0 }
    }

    /// The client receives what the hub sent since the last look; out of sync, it reconnects.
    fn observe(&mut self) {
        let (conn, reference) = &mut self.reference;
        for f in frames(conn) {
            if let Err(e) = reference.apply_text(&f) {
                panic!("the perfect link's client failed: {e:?}");
            }
            let seq = reference.seq().expect("in sync");
            self.truth.at.insert(seq, shown(reference));
        }
        let published = self.server.hub.snapshot();
        self.truth.at.insert(published.seq, of_snapshot(&published));
        for _ in 0..4 {
            for f in frames(&mut self.lossy.0) {
                for received in self.lossy.2.pass(f) {
                    self.receive(&received);
                }
            }
            if self.lossy.1.in_sync() {
                return;
            }
            // What a client does on a gap: a new socket, whose first frame is a snapshot.
            let fresh = self.server.connect(2, Protocol::RosterV1);
            drop(std::mem::replace(&mut self.lossy.0, fresh));
            self.lossy.2.reconnected();
            self.reconnects += 1;
        }
    }

    fn receive(&mut self, frame: &[u8]) {
        let view = &mut self.lossy.1;
        let _ = view.apply_text(frame);
        self.truth.check(view.in_sync().then(|| view.seq()).flatten(), shown(view));
    }

    /// The link heals, then one more change goes out: a client that missed the last frames
    /// learns it from that one's seq (a drop is noticed at the next frame, not before). Then it
    /// must be in sync and equal to the server.
    async fn finish(&mut self) {
        for late in self.lossy.2.heal() {
            self.receive(&late);
        }
        self.observe();
        // Everything pending goes out (past the grace); then a sign-up: a diff every client
        // receives.
        for marker in [false, false, true, false] {
            if marker {
                self.server.act(&Action::SignUp).await;
            }
            self.server.flush().await;
            self.observe();
        }
        let view = &self.lossy.1;
        assert!(view.in_sync(), "out of sync on a perfect link");
        let truth = of_snapshot(&self.server.hub.snapshot());
        assert_eq!(shown(view), truth);
        assert_eq!(shown(&self.reference.1), truth);
        assert_eq!(view.seq(), Some(self.server.hub.snapshot().seq));
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_roster_v1_client_is_right_or_knows_it_is_behind(
        actions in actions(),
        faults in faults(),
        grace_ms in prop_oneof![Just(0u64), Just(300)],
        capacity in prop_oneof![Just(2usize), Just(1024)],
    ) {
        run(|| async move {
            let mut case = Case::start(grace_ms, capacity, faults);
            case.server.flush().await;
            case.observe();
            for action in &actions {
                case.server.act(action).await;
                case.observe();
            }
            case.finish().await;
        });
    }
}

/// The property is not vacuous: a link that drops every third frame makes the client notice
/// gaps and reconnect, and it is checked against the server's list along the way.
#[test]
fn dropped_diffs_are_noticed_and_resynced() {
    run(|| async {
        let faults = vec![Fault::Deliver, Fault::Deliver, Fault::Drop];
        let mut case = Case::start(0, 1024, faults);
        case.server.flush().await;
        case.observe();
        for id in FIRST_ACTOR..=ACCOUNTS {
            case.server.act(&Action::Open(id)).await;
            case.server.flush().await;
            case.observe();
        }
        case.finish().await;
        assert!(case.reconnects >= 2, "reconnects: {}", case.reconnects);
        assert!(case.truth.checked >= 5, "checked: {}", case.truth.checked);
    });
}
