//! Tutorial frames in the server's order: the last frame about each user is the truth.

use presence::client::TutorialView;

use super::*;

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_last_tutorial_frame_about_a_user_is_the_truth(
        actions in actions(),
        duplicates in proptest::collection::vec(any::<bool>(), 1..16),
        grace_ms in prop_oneof![Just(0u64), Just(300)],
    ) {
        run(|| async move {
            let mut server = Server::start(grace_ms, 1024);
            let mut conn = server.connect(1, Protocol::Tutorial);
            let mut view = TutorialView::default();
            let mut n = 0;
            let mut receive = |conn: &mut Connection, view: &mut TutorialView| {
                for f in frames(conn) {
                    // A frame repeated right away changes nothing (no seq: a drop or a reorder
                    // would go unnoticed, which is why the server closes a lagging tutorial socket).
                    let times = if duplicates[n % duplicates.len()] { 2 } else { 1 };
                    n += 1;
                    for _ in 0..times {
                        view.apply_text(&f).expect("a tutorial frame");
                    }
                }
            };
            for action in &actions {
                server.act(action).await;
                receive(&mut conn, &mut view);
            }
            // Past the grace: every transition has gone out.
            server.flush().await;
            server.flush().await;
            receive(&mut conn, &mut view);
            for id in 1..server.next_account {
                let heard = view.users.get(&name(id)).copied();
                // A user never heard about is offline, as every actor was when the socket opened.
                assert_eq!(heard.unwrap_or(false), server.hub.is_online(id), "user{id}: heard {heard:?}");
            }
        });
    }
}
