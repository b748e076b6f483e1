//! PostgreSQL going away under a running app: every request that
//! needs the store gets a prompt `500` without a `Set-Cookie`, nothing is
//! half-written, and service resumes on the same app once the server is back.
//!
//! Each test starts a server of its own, since it stops it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::postgres::PgServer;
use crate::support::{App, Reply, id_of, key};
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use session_layer::{PostgresStore, Record, SessionLayer, SessionStore};

/// A request the store cannot serve must fail within this long: the pool's
/// two-second acquire timeout, and some slack.
const PROMPT: Duration = Duration::from_secs(6);

async fn stored(store: &PostgresStore, value: &str) -> Record {
    store
        .load(&id_of(value))
        .await
        .expect("the server is up")
        .expect("the session is stored")
}

fn assert_failed_without_cookie(reply: &Reply, what: &str) {
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{what}: {}",
        reply.body
    );
    assert!(
        reply.headers.get(SET_COOKIE).is_none(),
        "{what}: a failed request sent a cookie: {reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_gives_prompt_500s_and_service_resumes_when_it_is_back() {
    let server = PgServer::start();
    let store = PostgresStore::new(server.pool(4).await);
    store.migrate().await.expect("migrate");
    let app = App::new(SessionLayer::new(store.clone(), key(1)));
    let value = app.start_session().await;
    for expected in 1..=3 {
        assert_eq!(
            app.post("/incr", Some(&value)).await.body,
            expected.to_string()
        );
    }
    let before = stored(&store, &value).await;

    tokio::task::block_in_place(|| server.stop());
    for (post, uri, cookie) in [
        (true, "/incr", Some(value.as_str())),
        (false, "/n", Some(value.as_str())),
        (true, "/set/k/new", None),
        (true, "/cycle", Some(value.as_str())),
        (true, "/destroy", Some(value.as_str())),
    ] {
        let started = Instant::now();
        let reply = if post {
            app.post(uri, cookie).await
        } else {
            app.get(uri, cookie).await
        };
        assert_failed_without_cookie(&reply, uri);
        assert!(
            started.elapsed() < PROMPT,
            "{uri} took {:?} to fail",
            started.elapsed()
        );
    }
    // Routes that never touch the session are not affected.
    assert_eq!(app.get("/plain", Some(&value)).await.status, StatusCode::OK);

    // Back on the same port: the same app serves again, and the session is
    // exactly as it was before the outage.
    tokio::task::block_in_place(|| server.start_again());
    let after = stored(&store, &value).await;
    assert_eq!(after.version, before.version);
    assert_eq!(after.data, before.data);
    assert_eq!(app.get("/n", Some(&value)).await.body, "3");
    assert_eq!(app.post("/incr", Some(&value)).await.body, "4");
    let fresh = app.start_session().await;
    assert_ne!(fresh, value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_in_the_middle_of_a_run_leaves_nothing_half_written() {
    const WORKERS: usize = 8;
    let server = PgServer::start();
    let store = PostgresStore::new(server.pool(8).await);
    store.migrate().await.expect("migrate");
    let app = App::new(SessionLayer::new(store.clone(), key(1)));
    // The counter starts at 0 (the session holds only `k`).
    let value = app.start_session().await;
    let start = stored(&store, &value).await;

    // Workers increment the counter in a loop, through the outage.
    let running = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (app, value, running) = (app.clone(), value.clone(), Arc::clone(&running));
            tokio::spawn(async move {
                let mut replies = Vec::new();
                while running.load(Ordering::SeqCst) {
                    replies.push(app.post("/incr", Some(&value)).await);
                }
                replies
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| server.stop());
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| server.start_again());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    running.store(false, Ordering::SeqCst);

    let (mut ok, mut failed, mut ok_after_restart) = (0_u64, 0_u64, false);
    for worker in workers {
        let replies = tokio::time::timeout(Duration::from_secs(30), worker)
            .await
            .expect("the workers stop")
            .expect("no worker panics");
        for reply in &replies {
            assert!(
                reply.headers.get(SET_COOKIE).is_none(),
                "the session id never changes, so no response sets a cookie: {reply:?}"
            );
            match reply.status {
                StatusCode::OK => ok += 1,
                StatusCode::INTERNAL_SERVER_ERROR => failed += 1,
                status => panic!("unexpected {status}: {}", reply.body),
            }
        }
        ok_after_restart |= replies
            .last()
            .is_some_and(|reply| reply.status == StatusCode::OK);
    }
    eprintln!("during the run: {ok} requests succeeded, {failed} failed");
    assert!(failed > 0, "the outage failed no request");
    assert!(ok_after_restart, "no worker got through after the restart");

    // Every write is whole: the counter moved by exactly the number of
    // updates the store applied. Each successful response counted once; a
    // failed one counted at most once (its commit may have reached the
    // server just before the connection broke).
    let end = stored(&store, &value).await;
    let counted: u64 = app
        .get("/n", Some(&value))
        .await
        .body
        .parse()
        .expect("a count");
    assert_eq!(
        end.version - start.version,
        counted,
        "the version and the data disagree"
    );
    assert!(
        (ok..=ok + failed).contains(&counted),
        "{counted} increments stored, {ok} succeeded and {failed} failed"
    );
}
