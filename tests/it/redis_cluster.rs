//! `RedisStore` on a real Redis Cluster of three primaries: the whole
//! conformance suite, and an app whose sessions (and their rotations) span
//! every node.

use crate::support;
use crate::support::redis::{Raw, RedisCluster};
use crate::support::{App, id_of, key};
use axum::http::StatusCode;
use session_layer::store::conformance;
use session_layer::{RedisStore, SessionStore};

/// One cluster for the whole file: creating one takes a second or two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster() {
    let cluster = RedisCluster::start().await;
    let store = RedisStore::connect_cluster(cluster.urls())
        .await
        .expect("the store connects to the cluster");
    assert!(format!("{store:?}").contains(r#"connection: "cluster""#));

    // Every check of the public suite, in order.
    conformance::run_all(&store).await;

    // Two app instances, each with its own cluster connection.
    let a = App::new(support::no_grace(store.clone(), key(3)));
    let other = RedisStore::connect_cluster(cluster.urls())
        .await
        .expect("a second connection");
    let b = App::new(support::no_grace(other, key(3)));

    // Sessions land on every node, and rotation moves them between slots
    // (and so, often, between nodes) one single-key command at a time.
    let mut sessions = Vec::new();
    for n in 0..30 {
        let value = a.start_session().await;
        let reply = b.post("/cycle", Some(&value)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let new = reply.session_value().expect("a new id");
        assert_eq!(a.get("/get/k", Some(&new)).await.body, "v", "session {n}");
        assert_eq!(a.get("/get/k", Some(&value)).await.body, "<none>");
        assert!(store.load(&id_of(&value)).await.expect("load").is_none());
        sessions.push(new);
    }
    let mut nodes_with_keys = 0;
    for url in cluster.urls() {
        let mut raw = Raw::connect(&url).await;
        if raw.dbsize().await > 0 {
            nodes_with_keys += 1;
        }
    }
    assert_eq!(nodes_with_keys, 3, "30 sessions spread over the 3 nodes");

    // Concurrent increments from both instances: none is lost.
    let value = sessions.first().expect("30 sessions").clone();
    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let app = if n % 2 == 0 { a.clone() } else { b.clone() };
            let value = value.clone();
            tokio::spawn(async move { app.post("/incr", Some(&value)).await })
        })
        .collect();
    for task in tasks {
        let reply = task.await.expect("the request task did not panic");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    assert_eq!(b.get("/n", Some(&value)).await.body, "100");
}
