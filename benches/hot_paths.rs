//! Criterion micro-benchmarks of the layer's hot paths, through the public API
//! (and the `_fuzzing` feature's hook for the cookie verifier).
//!
//! Run with: `cargo bench --features _fuzzing --bench hot_paths`
//! (`-- --test` runs each benchmark once, as CI does).
//!
//! - `cookie/verify`: finding and verifying the session cookie in a
//!   `Cookie` header, as the layer does before any store call;
//! - `id/generate`, `id/sign`: a new session id from the OS CSPRNG, and its
//!   signed cookie value;
//! - `request/*`: a full request through a `Router` with the layer on a
//!   `MemoryStore` (read-only, read + write, and a route that does not
//!   extract the session);
//! - `memory_store/contended`: several threads doing load + update on
//!   distinct ids of one `MemoryStore`.

// criterion's macros define undocumented public items.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderValue, Request, header};
use session_layer::__fuzz::Verifier;
use session_layer::{Id, Key, MemoryStore, Record, Session, SessionLayer, SessionStore};
use tokio::runtime::Runtime;
use tower::ServiceExt;

fn key() -> Key {
    Key::from_bytes(&[7; 64]).expect("64 bytes is a valid key")
}

fn cookie_and_id(c: &mut Criterion) {
    let verifier = Verifier::new(
        &key(),
        &[],
        session_layer::SessionLayer::DEFAULT_COOKIE_NAME,
    );
    let id = Id::generate().expect("the OS has randomness");
    let value = verifier.sign(&id);
    let header = HeaderValue::from_str(&format!(
        "theme=dark; {}={value}; lang=en",
        session_layer::SessionLayer::DEFAULT_COOKIE_NAME
    ))
    .expect("a valid header");
    let headers = [header];
    assert_eq!(verifier.find(&headers).id, Some(id));

    c.bench_function("cookie/verify", |b| {
        b.iter(|| verifier.find(black_box(&headers)));
    });
    c.bench_function("id/generate", |b| b.iter(Id::generate));
    c.bench_function("id/sign", |b| b.iter(|| verifier.sign(black_box(&id))));
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
}

fn app() -> Router {
    Router::new()
        .route("/untouched", get(|| async { "ok" }))
        .route(
            "/read",
            get(|session: Session| async move {
                session
                    .get::<u64>("n")
                    .ok()
                    .flatten()
                    .unwrap_or(0)
                    .to_string()
            }),
        )
        .route(
            "/write",
            get(|session: Session| async move {
                session
                    .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
                    .map(|n| n.to_string())
            }),
        )
        .layer(SessionLayer::new(MemoryStore::default(), key()))
}

async fn send(app: &Router, path: &str, cookie: Option<&str>) -> http::Response<Body> {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let request = request.body(Body::empty()).expect("a valid request");
    app.clone().oneshot(request).await.expect("infallible")
}

fn requests(c: &mut Criterion) {
    let rt = runtime();
    let app = app();
    let cookie = rt.block_on(async {
        let response = send(&app, "/write", None).await;
        let set_cookie = response.headers()[header::SET_COOKIE]
            .to_str()
            .expect("ASCII");
        set_cookie.split(';').next().unwrap_or_default().to_owned()
    });
    for path in ["/untouched", "/read", "/write"] {
        c.bench_function(&format!("request{path}"), |b| {
            b.iter(|| rt.block_on(send(&app, path, Some(&cookie))));
        });
    }
    c.bench_function("request/anonymous_read", |b| {
        b.iter(|| rt.block_on(send(&app, "/read", None)));
    });
}

fn contended_store(c: &mut Criterion) {
    const THREADS: usize = 4;
    let store = MemoryStore::with_capacity(1_000);
    let now = SystemTime::now();
    let records: Vec<Record> = (0..THREADS)
        .map(|_| Record {
            id: Id::generate().expect("the OS has randomness"),
            version: 1,
            data: b"\x00{\"n\":0}"[..].into(),
            created_at: now,
            expires_at: now + Duration::from_secs(3600),
        })
        .collect();
    let rt = runtime();
    rt.block_on(async {
        for record in &records {
            let _ = store
                .create(record)
                .await
                .expect("the memory store never fails");
        }
    });

    let mut group = c.benchmark_group("memory_store");
    group.throughput(Throughput::Elements(THREADS as u64));
    group.bench_function(format!("contended/{THREADS}_threads_load_update"), |b| {
        b.iter_custom(|iters| {
            let barrier = Barrier::new(THREADS + 1);
            std::thread::scope(|scope| {
                for record in &records {
                    let (store, barrier) = (&store, &barrier);
                    scope.spawn(move || {
                        let rt = runtime();
                        barrier.wait();
                        rt.block_on(async {
                            for _ in 0..iters {
                                let mut current = store
                                    .load(&record.id)
                                    .await
                                    .expect("the memory store never fails")
                                    .expect("the record is live");
                                let expected = current.version;
                                current.version += 1;
                                let _ = store
                                    .update(&current, expected)
                                    .await
                                    .expect("the memory store never fails");
                            }
                        });
                    });
                }
                barrier.wait();
                let start = Instant::now();
                // The scope joins every thread before it returns.
                start
            })
            .elapsed()
        });
    });
    group.finish();
}

criterion_group!(benches, cookie_and_id, requests, contended_store);
criterion_main!(benches);
