//! roster.v2 (live views) through the hub's public API: a window's snapshot then its operations,
//! one frame per group shared by its sockets, counts-only frames for changes after a window,
//! moving to another window, lag, and groups dropped with their last socket.

use presence::protocol::views::{PageView, ViewFrame, ViewUser};
use presence::{AccountList, ViewRequest, WatchError, Window};

use super::*;

/// A hub whose directory holds `user1` .. `user{n}` (ids 1..=n), never seen.
fn start_views(n: i64, tick_ms: u64, capacity: usize) -> TestHub {
    let offline = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let layer = MemoryCluster::new(LayerConfig { grace: Duration::ZERO, ..LayerConfig::default() });
    let mut accounts = AccountList::new(presence::hub::lowercase_key);
    for id in 1..=n {
        accounts.push(id, &format!("user{id}"), None, None);
    }
    let (hub, task) = Hub::start_with(
        HubConfig { tick: Duration::from_millis(tick_ms), max_sockets_per_user: 4, queue_capacity: capacity },
        accounts,
        layer.node(),
        offline.clone(),
        shutdown.clone(),
    )
    .expect("the hub joins the in-process cluster");
    TestHub { hub, shutdown, task, offline }
}

fn window(offset: u32, limit: u32, q: &str) -> Window {
    Window::new(offset.into(), limit.into(), q).expect("a valid window")
}

/// Applies every frame already queued for `c`.
fn drain(view: &mut PageView, c: &mut Connection) -> usize {
    let mut n = 0;
    while let Some(out) = c.try_next() {
        match out {
            Outgoing::Frame(b) => {
                view.apply_text(&b).unwrap_or_else(|gap| panic!("{gap}: {}", String::from_utf8_lossy(&b)));
                n += 1;
            }
            Outgoing::Close { code, .. } => panic!("unexpected close {code}"),
        }
    }
    n
}

/// Lets batches go out (ticks, and a view group's interval of 5 ticks, pass) and applies what
/// arrived.
async fn pass(view: &mut PageView, c: &mut Connection) {
    tokio::time::advance(Duration::from_millis(600)).await;
    settle().await;
    drain(view, c);
}

fn names(view: &PageView) -> Vec<String> {
    view.users.iter().map(|u| format!("{}{}", u.username, if u.online { "+" } else { "" })).collect()
}

#[tokio::test(start_paused = true)]
async fn a_window_gets_its_snapshot_then_only_its_operations() {
    let t = start_views(20, 100, 1024);
    let mut w = t.hub.watch(user(1), session("w"), &window(0, 5, "")).unwrap();
    let mut view = PageView::default();
    pass(&mut view, &mut w).await;
    assert_eq!(view.snapshots, 1);
    // The watcher's own Online may be in the snapshot or in the diff after it.
    assert_eq!(names(&view), ["user1+", "user2", "user3", "user4", "user5"]);
    assert_eq!((view.counts.total, view.counts.online_count, view.counts.registered_count), (20, 1, 20));

    // user10 comes online: it sorts second (online by name), and user5 leaves the window.
    let ten = t.open(10, "ten", Protocol::Tutorial);
    pass(&mut view, &mut w).await;
    assert_eq!(names(&view), ["user1+", "user10+", "user2", "user3", "user4"]);
    // It leaves: the most recently seen offline user, right after the online ones: in place.
    drop(ten);
    pass(&mut view, &mut w).await;
    assert_eq!(names(&view), ["user1+", "user10", "user2", "user3", "user4"]);
    assert!(view.users[1].last_seen.is_some_and(|t| t > 1_600_000_000_000));
    assert_eq!(view.counts.online_count, 1);
}

#[tokio::test(start_paused = true)]
async fn a_change_after_the_window_is_a_counts_update_shared_by_the_group() {
    let t = start_views(30, 100, 1024);
    let _online: Vec<Connection> = (1..=3).map(|id| t.open(id, &format!("s{id}"), Protocol::Tutorial)).collect();
    let mut a = t.hub.watch(user(4), session("a"), &window(0, 2, "")).unwrap();
    let mut b = t.hub.watch(user(5), session("b"), &window(0, 2, "")).unwrap();
    let (mut va, mut vb) = (PageView::default(), PageView::default());
    pass(&mut va, &mut a).await;
    pass(&mut vb, &mut b).await;
    assert_eq!(names(&va), ["user1+", "user2+"]);
    assert_eq!(t.hub.stats().view_groups, 1, "one group for one window");

    // user30 sorts after user3, user4, user5 among the online: after the window.
    let _late = t.open(30, "late", Protocol::Tutorial);
    tokio::time::advance(Duration::from_millis(600)).await;
    settle().await;
    let (Some(Outgoing::Frame(fa)), Some(Outgoing::Frame(fb))) = (a.try_next(), b.try_next()) else {
        panic!("one frame each")
    };
    assert_eq!(fa.as_ptr(), fb.as_ptr(), "the group's sockets share one encoded frame");
    let ViewFrame::Diff(d) = presence::protocol::views::parse_view_frame(&fa).unwrap() else { panic!("a diff") };
    assert!(d.ops.is_empty(), "only the counts changed: {d:?}");
    assert_eq!(d.online_count, 6);
    assert!(a.try_next().is_none());
}

#[tokio::test(start_paused = true)]
async fn watch_moves_to_another_window_and_answers_with_the_request_id() {
    let t = start_views(20, 100, 1024);
    let mut c = t.hub.watch(user(1), session("w"), &window(0, 3, "")).unwrap();
    let mut view = PageView::default();
    pass(&mut view, &mut c).await;
    assert_eq!(t.hub.stats().view_groups, 1);

    // A search: user1, user10 .. user19 match "USER1" (case-insensitive prefix).
    let request = ViewRequest { id: 7, window: window(1, 3, "USER1") };
    view.requested(request.id);
    c.watch(request.id, &request.window).unwrap();
    // A change meant for the old window only: it must not reach this socket any more.
    let _two = t.open(2, "two", Protocol::Tutorial);
    pass(&mut view, &mut c).await;
    assert!(view.live, "the snapshot of request 7 arrived");
    assert_eq!((view.offset, view.limit, view.q.as_str()), (1, 3, "user1"));
    assert_eq!(names(&view), ["user10", "user11", "user12"], "user1 (online) is at 0, outside the window");
    assert_eq!(view.counts.total, 11);
    assert_eq!(t.hub.stats().view_groups, 1, "the old group went with its last socket");

    // The window's own changes arrive: user11 online moves to the front of the search.
    let _eleven = t.open(11, "eleven", Protocol::Tutorial);
    pass(&mut view, &mut c).await;
    assert_eq!(names(&view), ["user11+", "user10", "user12"]);

    assert_eq!(
        t.hub.connect(user(3), session("x"), Protocol::Tutorial).unwrap().watch(1, &window(0, 1, "")),
        Err(WatchError::NotAView)
    );
    drop(c);
    settle().await;
    assert_eq!(t.hub.stats().view_groups, 0);
}

#[tokio::test(start_paused = true)]
async fn view_changes_faster_than_a_person_are_refused() {
    let t = start_views(5, 100, 1024);
    let mut c = t.hub.watch(user(1), session("w"), &window(0, 3, "")).unwrap();
    let results: Vec<_> = (0..25u64).map(|i| c.watch(i + 1, &window((i % 3) as u32, 2, ""))).collect();
    assert!(results[..20].iter().all(Result::is_ok), "a burst of 20 is fine");
    assert_eq!(results[24], Err(WatchError::TooFast));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(c.watch(99, &window(0, 2, "")).is_ok(), "and it comes back with time");
}

#[tokio::test(start_paused = true)]
async fn a_view_socket_that_falls_behind_gets_its_windows_snapshot() {
    // Tick 0 and a tiny queue: every change its own batch, and the group's ring holds 4.
    let t = start_views(40, 0, 4);
    let mut slow = t.hub.watch(user(1), session("slow"), &window(0, 10, "")).unwrap();
    let mut view = PageView::default();
    pass(&mut view, &mut slow).await;
    let mut held = Vec::new();
    for i in 0..200i64 {
        let u = 2 + i % 30;
        if i % 3 == 2 {
            held.pop();
        } else if let Ok(c) = t.hub.connect(user(u), session(&format!("s{u}")), Protocol::Tutorial) {
            held.push(c);
        }
        settle().await;
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    tokio::time::advance(Duration::from_millis(300)).await;
    settle().await;
    let snapshots = view.snapshots;
    drain(&mut view, &mut slow);
    assert!(view.snapshots > snapshots, "resynced with a snapshot");
    assert!(t.hub.stats().lagging_resyncs >= 1);
    // A fresh socket on the same window sees exactly what the slow one now has.
    let mut fresh = t.hub.watch(user(1), session("fresh"), &window(0, 10, "")).unwrap();
    let mut check = PageView::default();
    drain(&mut check, &mut fresh);
    assert_eq!(check.users, view.users);
    assert_eq!(check.counts, view.counts);
    let online: Vec<&ViewUser> = view.users.iter().filter(|u| u.online).collect();
    assert_eq!(online.len() as u64, view.counts.online_count.min(10));
}

/// User 1 watching the first 10 of 30, after everything has gone out and a quiet while.
async fn quiet_watcher() -> (TestHub, Connection, PageView) {
    let t = start_views(30, 100, 1024);
    let mut w = t.hub.watch(user(1), session("w"), &window(0, 10, "")).unwrap();
    let mut view = PageView::default();
    pass(&mut view, &mut w).await;
    tokio::time::advance(Duration::from_secs(2)).await;
    settle().await;
    drain(&mut view, &mut w);
    (t, w, view)
}

#[tokio::test(start_paused = true)]
async fn a_lone_change_goes_at_once_and_a_burst_waits_for_the_groups_interval() {
    let (t, mut w, mut view) = quiet_watcher().await;

    // A lone change after a quiet time: at once, without waiting for a tick.
    let _two = t.open(2, "2", Protocol::Tutorial);
    settle().await;
    assert_eq!(drain(&mut view, &mut w), 1, "the lone change went out at once");
    // More changes in the next batches: the group waits for its interval (5 ticks).
    let mut held = Vec::new();
    for id in 3..7 {
        held.push(t.open(id, &format!("s{id}"), Protocol::Tutorial));
        tokio::time::advance(Duration::from_millis(100)).await;
        settle().await;
    }
    assert_eq!(drain(&mut view, &mut w), 0, "within the interval, nothing");
    tokio::time::advance(Duration::from_millis(150)).await;
    settle().await;
    assert_eq!(drain(&mut view, &mut w), 1, "then one frame for all of them");
    assert_eq!(names(&view)[..6], ["user1+", "user2+", "user3+", "user4+", "user5+", "user6+"]);
    assert_eq!(view.counts.online_count, 6);
}

#[tokio::test(start_paused = true)]
async fn a_group_due_right_after_a_flush_that_reached_nobody_goes_out_when_due() {
    let (t, mut w, mut view) = quiet_watcher().await;

    // The others open pages too (no tutorial or roster.v1 socket reads the hub's batches).
    let _two = t.open(2, "2", Protocol::RosterV2);
    settle().await;
    assert_eq!(drain(&mut view, &mut w), 1, "a lone change at once");
    // A change just before the group is due: its batch reaches no socket (no tutorial or
    // roster.v1 socket, and the group waits), so it must not hold the group back another tick.
    tokio::time::advance(Duration::from_millis(495)).await;
    let _three = t.open(3, "3", Protocol::RosterV2);
    settle().await;
    assert_eq!(drain(&mut view, &mut w), 0, "not due yet");
    tokio::time::advance(Duration::from_millis(10)).await;
    settle().await;
    assert_eq!(drain(&mut view, &mut w), 1, "sent when due, not a tick later");
    assert_eq!(view.counts.online_count, 3);
}
