//! `RedisStore` on a real `redis-server`: the public conformance suite, the
//! layout it leaves in Redis (one key per session, native TTL), foreign
//! data, the per-call timeout, and the commands each kind of request costs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support;
use crate::support::redis::{RedisServer, ServedStore};
use crate::support::{App, id_of, key};
use axum::http::StatusCode;
use session_layer::{Created, ErrorKind, Id, Record, RedisStore, SessionLayer, SessionStore};

mod conformance {
    session_layer::store_conformance_tests!(|| async { super::ServedStore::start().await });
}

fn record(lifetime: Duration) -> Record {
    let now = SystemTime::now();
    Record {
        id: Id::generate().expect("os rng"),
        version: 1,
        data: b"{}"[..].into(),
        created_at: now,
        expires_at: now + lifetime,
    }
}

fn redis_key(store: &RedisStore, id: &Id) -> String {
    format!("{}{}", store.prefix(), id.expose())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_one_key_whose_ttl_is_its_deadline() {
    let server = RedisServer::start().await;
    let store = RedisStore::builder()
        .prefix("app1:s:")
        .connect(server.url())
        .await
        .expect("the store connects to the test server");
    let mut raw = server.client().await;

    let record = record(Duration::from_secs(90));
    assert_eq!(
        store.create(&record).await.expect("create"),
        Created::Created
    );
    let key = redis_key(&store, &record.id);
    assert!(key.starts_with("app1:s:") && key.len() == "app1:s:".len() + 22);
    assert_eq!(raw.dbsize().await, 1);
    assert!(raw.exists(&key).await);

    // PXAT is the record's deadline, to the millisecond.
    let deadline_ms: i64 = raw.run(&[b"PEXPIRETIME", key.as_bytes()]).await;
    let expected = record
        .expires_at
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    assert_eq!(u128::try_from(deadline_ms).expect("a deadline"), expected);
    let pttl = raw.pttl(&key).await;
    assert!((85_000..=90_000).contains(&pttl), "PTTL {pttl}");

    // The value is the documented layout: tag, version, times, data.
    let value: Vec<u8> = raw.run(&[b"GET", key.as_bytes()]).await;
    assert_eq!(&value[..4], b"sl\0\x01");
    assert_eq!(&value[4..12], &1_u64.to_be_bytes());
    assert_eq!(&value[28..], b"{}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_disappears_from_redis_by_itself() {
    let server = RedisServer::start().await;
    let store = server.store().await;
    let layer = SessionLayer::builder(store.clone(), key(1))
        .idle_timeout(Duration::from_secs(1))
        .build()
        .expect("valid config");
    let app = App::new(layer);
    let mut raw = server.client().await;

    let value = app.start_session().await;
    let redis_key = redis_key(&store, &id_of(&value));
    let pttl = raw.pttl(&redis_key).await;
    assert!((1..=1_000).contains(&pttl), "PTTL {pttl}");

    // Nobody touches the session, nor the key: Redis's own expiry cycle
    // removes it (DBSIZE counts keys that expired but were not removed yet,
    // so it reaching zero shows the removal, not just a hidden key).
    let deadline = Instant::now() + Duration::from_secs(5);
    while raw.dbsize().await > 0 {
        assert!(
            Instant::now() < deadline,
            "Redis did not expire the idle session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats: String = raw.run(&[b"INFO", b"stats"]).await;
    assert!(stats.contains("expired_keys:1"), "{stats}");
    assert!(!raw.exists(&redis_key).await);
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "<none>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_data_under_a_session_key_is_a_deserialize_error() {
    let server = RedisServer::start().await;
    let store = server.store().await;
    let app = App::new(SessionLayer::new(store.clone(), key(1)));
    let mut raw = server.client().await;

    let value = app.start_session().await;
    let id = id_of(&value);
    let key = redis_key(&store, &id);
    let good: Vec<u8> = raw.run(&[b"GET", key.as_bytes()]).await;
    let mut wrong_tag = good.clone();
    wrong_tag[0] = b'X';

    // Foreign text, an empty string, a record cut inside its header, and one
    // with a wrong format tag: none loads, none is overwritten.
    let strings: [&[u8]; 4] = [b"{\"user\":42}", b"", &good[..11], &wrong_tag];
    for foreign in strings {
        raw.run::<()>(&[b"SET", key.as_bytes(), foreign]).await;
        let error = store.load(&id).await.expect_err("not a record");
        assert_eq!(error.kind(), ErrorKind::Deserialize, "{error:?}");
        // Through the layer: a 500 that keeps the browser's cookie.
        let reply = app.get("/get/k", Some(&value)).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(reply.session_cookie().is_none(), "{reply:?}");
        // Nothing overwrites it: a write to a foreign value is stale.
        let next = Record {
            id,
            ..record(Duration::from_secs(60))
        };
        assert_eq!(
            store.update(&next, 1).await.expect("update"),
            session_layer::Updated::Stale
        );
        let kept: Vec<u8> = raw.run(&[b"GET", key.as_bytes()]).await;
        assert_eq!(kept, foreign);
    }

    // A record cut after its header does not load either (an update from
    // the version in its header may replace it).
    raw.run::<()>(&[b"SET", key.as_bytes(), &good[..20]]).await;
    let error = store.load(&id).await.expect_err("a truncated record");
    assert_eq!(error.kind(), ErrorKind::Deserialize, "{error:?}");

    // A key of another type.
    raw.run::<()>(&[b"DEL", key.as_bytes()]).await;
    raw.run::<()>(&[b"HSET", key.as_bytes(), b"version", b"1"])
        .await;
    let error = store.load(&id).await.expect_err("a hash is not a record");
    assert_eq!(error.kind(), ErrorKind::Deserialize, "{error:?}");
    let next = Record {
        id,
        ..record(Duration::from_secs(60))
    };
    let error = store.update(&next, 1).await.expect_err("a hash");
    assert_eq!(error.kind(), ErrorKind::Deserialize, "{error:?}");
    let reply = app.post("/set/k/x", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.session_cookie().is_none(), "{reply:?}");
}

/// A store call on a paused Redis fails with a timeout error after the
/// configured time, and the layer answers 500 without a cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_times_out_within_the_configured_time() {
    const TIMEOUT: Duration = Duration::from_millis(200);
    let server = RedisServer::start().await;
    let store = RedisStore::builder()
        .timeout(TIMEOUT)
        .connect(server.url())
        .await
        .expect("a valid timeout");
    assert_eq!(store.timeout(), TIMEOUT);
    let app = App::new(SessionLayer::new(store.clone(), key(1)));
    let value = app.start_session().await;
    let mut raw = server.client().await;

    // Longer than every bound below, so that a call that waited for the
    // pause to end would fail them.
    const PAUSE: Duration = Duration::from_secs(3);
    raw.run::<()>(&[b"CLIENT", b"PAUSE", b"3000", b"ALL"]).await;
    let paused = Instant::now();
    let started = Instant::now();
    let error = store
        .load(&id_of(&value))
        .await
        .expect_err("Redis is paused");
    let took = started.elapsed();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error:?}");
    assert_eq!(error.to_string(), "session store call timed out");
    assert!(
        (TIMEOUT..TIMEOUT + Duration::from_millis(700)).contains(&took),
        "took {took:?}"
    );

    // A request that reads, one that writes, and a new session: all 500,
    // none with a cookie.
    for (method, uri, cookie) in [
        ("GET", "/get/k", Some(value.as_str())),
        ("POST", "/set/k/w", Some(value.as_str())),
        ("POST", "/set/k/new", None),
    ] {
        let started = Instant::now();
        let reply = if method == "GET" {
            app.get(uri, cookie).await
        } else {
            app.post(uri, cookie).await
        };
        assert!(started.elapsed() < Duration::from_secs(1), "{uri} hung");
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        assert!(reply.session_cookie().is_none(), "{uri}: {reply:?}");
        assert!(reply.body.contains("timed out"), "{}", reply.body);
    }
    // A route that does not use the session does not wait for Redis.
    let started = Instant::now();
    assert_eq!(app.get("/plain", None).await.status, StatusCode::OK);
    assert!(started.elapsed() < TIMEOUT);

    // Once the pause ends, the same store serves again. The write to the
    // session never got past its load, so the session is unchanged. (The
    // new session's `SET NX`, sent during the pause, runs when Redis
    // resumes: a record under an id nobody was given, which expires by
    // itself.)
    let resumed = paused + PAUSE + Duration::from_millis(100);
    tokio::time::sleep(resumed.saturating_duration_since(Instant::now())).await;
    let reply = app.get("/get/k", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "v");
}

#[tokio::test]
async fn the_timeout_must_be_longer_than_zero() {
    let server = RedisServer::start().await;
    let error = RedisStore::builder()
        .timeout(Duration::ZERO)
        .connect(server.url())
        .await
        .expect_err("zero is refused");
    assert_eq!(error.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn an_invalid_url_is_a_configuration_error() {
    let error = RedisStore::connect("http://127.0.0.1:6379")
        .await
        .expect_err("not a redis URL");
    assert_eq!(error.kind(), ErrorKind::Config, "{error:?}");
}

#[tokio::test]
async fn debug_shows_the_settings_but_no_connection_details() {
    let server = RedisServer::start().await;
    let store = server.store().await;
    assert_eq!(store.prefix(), RedisStore::DEFAULT_PREFIX);
    assert_eq!(store.timeout(), RedisStore::DEFAULT_TIMEOUT);
    let debug = format!("{store:?}");
    assert_eq!(
        debug,
        r#"RedisStore { connection: "single", prefix: "session:", timeout: 1s }"#
    );
    assert!(!debug.contains(&server.port().to_string()));
}

/// Counts the commands Redis runs for each kind of request, from
/// `INFO commandstats`. Commands run by a script are counted by Redis too:
/// `getrange` and `set` under an `evalsha` are part of that one round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_per_request() {
    let server = RedisServer::start().await;
    let store = server.store().await;
    let app = App::new(support::no_grace(store, key(1)));
    let mut raw = server.client().await;

    // Warm up: the first call of each script loads it into Redis.
    let warm = app.start_session().await;
    assert_eq!(
        app.post("/set/k/warm", Some(&warm)).await.status,
        StatusCode::OK
    );
    assert_eq!(app.post("/cycle", Some(&warm)).await.status, StatusCode::OK);
    let value = app.start_session().await;

    async fn calls(
        raw: &mut support::redis::Raw,
        request: impl std::future::Future<Output = support::Reply>,
    ) -> BTreeMap<String, u64> {
        raw.reset_stats().await;
        let reply = request.await;
        assert!(reply.status.is_success(), "{}", reply.body);
        raw.command_calls().await
    }
    fn expect(commands: &[(&str, u64)]) -> BTreeMap<String, u64> {
        commands
            .iter()
            .map(|&(name, calls)| (name.to_owned(), calls))
            .collect()
    }

    // A route that never extracts the session: nothing.
    assert_eq!(
        calls(&mut raw, app.get("/plain", Some(&value))).await,
        expect(&[])
    );
    // A read: one GET.
    assert_eq!(
        calls(&mut raw, app.get("/get/k", Some(&value))).await,
        expect(&[("get", 1)])
    );
    // A write: GET, then one EVALSHA (which runs GETRANGE and SET inside
    // Redis).
    assert_eq!(
        calls(&mut raw, app.post("/set/k/w", Some(&value))).await,
        expect(&[("evalsha", 1), ("get", 1), ("getrange", 1), ("set", 1)])
    );
    // A new session: one SET NX.
    assert_eq!(
        calls(&mut raw, app.post("/set/k/v", None)).await,
        expect(&[("set", 1)])
    );
    // A new id (login): GET, SET NX for the new key, one EVALSHA that
    // deletes the old key if it still holds the version read.
    assert_eq!(
        calls(&mut raw, app.post("/cycle", Some(&value))).await,
        expect(&[
            ("del", 1),
            ("evalsha", 1),
            ("get", 1),
            ("getrange", 1),
            ("set", 1)
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_loaded_again_after_redis_forgets_them() {
    let server = RedisServer::start().await;
    let store = server.store().await;
    let app = App::new(SessionLayer::new(store, key(1)));
    let mut raw = server.client().await;
    let value = app.start_session().await;

    for round in 0..2 {
        // As after a restart of Redis: the script cache is empty.
        let flushed: String = raw.run(&[b"SCRIPT", b"FLUSH"]).await;
        assert_eq!(flushed, "OK");
        raw.reset_stats().await;
        let reply = app.post(&format!("/set/k/v{round}"), Some(&value)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        // EVALSHA answered NOSCRIPT, the script was loaded, EVALSHA again.
        let calls = raw.command_calls().await;
        assert_eq!(calls.get("evalsha"), Some(&2), "{calls:?}");
        assert_eq!(calls.get("script|load"), Some(&1), "{calls:?}");
        assert_eq!(
            app.get("/get/k", Some(&value)).await.body,
            format!("v{round}")
        );
    }
}
