//! Apps on `RedisStore` over HTTP: two instances sharing one Redis, and a
//! Redis that goes away in the middle of a run and comes back.

use std::time::{Duration, Instant};

use crate::support;
use crate::support::redis::RedisServer;
use crate::support::{App, Reply, id_of, key};
use axum::http::StatusCode;
use session_layer::{RedisStore, SessionLayer, SessionStore};

/// An app instance: its own router, layer and Redis connection, with the
/// key every instance shares.
async fn instance(server: &RedisServer) -> (App, RedisStore) {
    let store = server.store().await;
    (App::new(support::no_grace(store.clone(), key(7))), store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_started_on_one_instance_is_served_by_the_other() {
    let server = RedisServer::start().await;
    let (a, _) = instance(&server).await;
    let (b, store_b) = instance(&server).await;

    let value = a.start_session().await;
    assert_eq!(b.get("/get/k", Some(&value)).await.body, "v");
    let reply = b.post("/set/k/from-b", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.session_cookie().is_none(), "the id did not change");
    assert_eq!(a.get("/get/k", Some(&value)).await.body, "from-b");

    // A new id issued by one instance is honoured by the other, and the
    // old one is dead on both.
    let reply = a.post("/cycle", Some(&value)).await;
    let new = reply.session_value().expect("a rotated cookie");
    assert_eq!(b.get("/get/k", Some(&new)).await.body, "from-b");
    assert_eq!(b.get("/get/k", Some(&value)).await.body, "<none>");
    assert!(store_b.load(&id_of(&value)).await.expect("load").is_none());

    // Logging out on one instance ends the session on the other.
    assert_eq!(b.post("/destroy", Some(&new)).await.status, StatusCode::OK);
    assert_eq!(a.get("/get/k", Some(&new)).await.body, "<none>");
    assert_eq!(server.client().await.dbsize().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_increments_over_two_instances_all_count() {
    let server = RedisServer::start().await;
    let (a, _) = instance(&server).await;
    let (b, store) = instance(&server).await;
    let value = a.start_session().await;

    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let app = if n % 2 == 0 { a.clone() } else { b.clone() };
            let value = value.clone();
            tokio::spawn(async move { app.post("/incr", Some(&value)).await })
        })
        .collect();
    for task in tasks {
        let reply = task.await.expect("the request task did not panic");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(reply.session_cookie().is_none(), "{reply:?}");
    }
    assert_eq!(a.get("/n", Some(&value)).await.body, "200");
    assert_eq!(b.get("/n", Some(&value)).await.body, "200");
    let record = store
        .load(&id_of(&value))
        .await
        .expect("load")
        .expect("the session");
    assert_eq!(record.version, 201, "one create and 200 updates");
}

/// Sends requests until one answers something other than 500, for at most
/// `limit`.
async fn first_success(app: &App, uri: &str, cookie: &str, limit: Duration) -> Reply {
    let deadline = Instant::now() + limit;
    loop {
        let reply = app.get(uri, Some(cookie)).await;
        if reply.status != StatusCode::INTERNAL_SERVER_ERROR || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_answers_500_and_the_app_recovers_without_a_restart() {
    let mut server = RedisServer::start().await;
    let store = RedisStore::builder()
        .timeout(Duration::from_millis(300))
        .connect(server.url())
        .await
        .expect("a valid timeout");
    let app = App::new(SessionLayer::new(store, key(1)));
    let value = app.start_session().await;
    for _ in 0..3 {
        assert_eq!(app.post("/incr", Some(&value)).await.status, StatusCode::OK);
    }
    // Keep what is stored across the restart, to show below that nothing
    // written during the outage got in.
    server.client().await.run::<()>(&[b"SAVE"]).await;
    server.stop();

    for (read, uri, cookie) in [
        (true, "/n", Some(value.as_str())),
        (false, "/incr", Some(value.as_str())),
        (false, "/set/k/lost", Some(value.as_str())),
        (false, "/set/k/new-session", None),
    ] {
        let started = Instant::now();
        let reply = if read {
            app.get(uri, cookie).await
        } else {
            app.post(uri, cookie).await
        };
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{uri} took {:?}",
            started.elapsed()
        );
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        assert!(reply.session_cookie().is_none(), "{uri}: {reply:?}");
    }
    // Routes that do not use the session keep working.
    assert_eq!(app.get("/plain", None).await.status, StatusCode::OK);

    server.start_again().await;
    // The same app, with the same store, serves again once it has
    // reconnected (its backoff waits at most a second between attempts).
    let reply = first_success(&app, "/n", &value, Duration::from_secs(10)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "3", "no write from the outage got in");
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");
    let reply = app.post("/incr", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "4");
    assert_eq!(server.client().await.dbsize().await, 1);
}
