//! Floods: what ten thousand hostile or careless requests cost the store.
//!
//! - anonymous requests that only read create nothing and load nothing;
//! - forged cookies (tampered, truncated, random, signed by another key or for
//!   another cookie name) load nothing and create nothing;
//! - validly signed but unknown ids (minted by the same key on another store)
//!   cost exactly one load each, create nothing, and are never adopted.
//!
//! Every store call is counted by a wrapper around a real `MemoryStore`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::support;
use crate::support::{App, Call, Hook, Op, Wrapped, key};
use axum::http::header::SET_COOKIE;
use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use session_layer::{Error, Id, MemoryStore, SessionLayer};

const FLOOD: usize = 10_000;
/// Concurrent senders; each sends `FLOOD / SENDERS` requests.
const SENDERS: usize = 8;

/// Counts every call and records how often each id was loaded.
type Tally = Wrapped<MemoryStore, Calls>;

/// The writes and the loads of each id so far, shared by the store's clones.
#[derive(Clone, Default)]
struct Calls {
    writes: Arc<AtomicUsize>,
    loads: Arc<Mutex<HashMap<Id, usize>>>,
}

impl Tally {
    fn loads(&self) -> HashMap<Id, usize> {
        self.hook()
            .loads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn total_loads(&self) -> usize {
        self.loads().values().sum()
    }

    fn writes(&self) -> usize {
        self.hook().writes.load(Ordering::SeqCst)
    }
}

impl Hook for Calls {
    async fn around<T: Send>(&self, op: Op, id: &Id, call: impl Call<T>) -> Result<T, Error> {
        if op == Op::Load {
            *self
                .loads
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(*id)
                .or_default() += 1;
        } else {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        call.await
    }
}

fn tallied() -> (App, Tally) {
    let store = Tally::default();
    let app = App::new(SessionLayer::new(store.clone(), key(1)));
    (app, store)
}

/// Sends one request per item from `SENDERS` concurrent tasks and checks
/// every reply with `check`.
async fn flood<T: Clone + Send + Sync + 'static>(
    app: &App,
    items: Vec<T>,
    request: fn(&T) -> (Method, &'static str, Option<String>),
    check: fn(&T, &support::Reply),
) {
    let items = Arc::new(items);
    let tasks: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (app, items) = (app.clone(), Arc::clone(&items));
            tokio::spawn(async move {
                for item in items.iter().skip(sender).step_by(SENDERS) {
                    let (method, uri, cookie) = request(item);
                    let reply = app.send(method, uri, cookie.as_deref()).await;
                    check(item, &reply);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a sender panicked");
    }
}

/// Requests that read the session, or change an empty one without storing
/// anything.
const ANONYMOUS: [(Method, &str); 8] = [
    (Method::GET, "/get/k"),
    (Method::GET, "/n"),
    (Method::GET, "/id"),
    (Method::GET, "/maybe"),
    (Method::GET, "/typed"),
    (Method::POST, "/remove/k"),
    (Method::POST, "/clear"),
    (Method::POST, "/destroy"),
];

fn no_session_cookie(reply: &support::Reply) {
    assert!(reply.status.is_success(), "{reply:?}");
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_anonymous_requests_touch_no_store() {
    let (app, store) = tallied();
    let items: Vec<usize> = (0..FLOOD).collect();
    flood(
        &app,
        items,
        |&i| {
            let (method, uri) = ANONYMOUS[i % ANONYMOUS.len()].clone();
            (method, uri, None)
        },
        |_, reply| no_session_cookie(reply),
    )
    .await;
    assert_eq!(store.total_loads(), 0, "no cookie, no load");
    assert_eq!(store.writes(), 0, "nothing to store, no write");
    assert_eq!(store.inner().len(), 0, "no record");
}

/// Replaces the character at `index` with another base64url character.
fn flip(value: &str, index: usize) -> String {
    let mut bytes = value.as_bytes().to_vec();
    if let Some(byte) = bytes.get_mut(index) {
        *byte = if *byte == b'A' { b'B' } else { b'A' };
    }
    String::from_utf8(bytes).expect("ASCII")
}

/// Returns `FLOOD` forged values, all different, none valid: the first 64
/// are one-character flips of a real cookie (each position once); the rest
/// rotate through truncations, random canonical values, values signed by
/// other keys or for another cookie name, and malformed text.
async fn forgeries(genuine: &str, memory: &MemoryStore) -> Vec<String> {
    let other_key = App::new(SessionLayer::new(MemoryStore::default(), key(2)))
        .start_session()
        .await;
    let other_name = App::named(
        SessionLayer::builder(memory.clone(), key(1))
            .cookie_name("sid")
            .build()
            .expect("a valid configuration"),
        "sid",
    )
    .start_session()
    .await;
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut random_value = move || {
        let raw: Vec<u8> = (0..48)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes().first().copied().unwrap_or_default()
            })
            .collect();
        URL_SAFE_NO_PAD.encode(raw)
    };
    let mut forged: Vec<String> = (0..64).map(|index| flip(genuine, index)).collect();
    for i in forged.len()..FLOOD {
        forged.push(match i % 6 {
            0 => genuine.get(..i % 64).unwrap_or_default().to_owned(),
            1 | 2 => random_value(),
            3 => flip(&other_key, i % 64),
            4 => flip(&other_name, i % 64),
            _ => format!("{genuine}{i}"),
        });
    }
    forged.push(other_key);
    forged.push(other_name);
    forged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_forged_cookies_load_nothing_and_create_nothing() {
    let (app, store) = tallied();
    let genuine = app.start_session().await;
    let forged = forgeries(&genuine, store.inner()).await;
    assert!(forged.len() >= FLOOD);
    let (loads, writes, records) = (store.total_loads(), store.writes(), store.inner().len());

    flood(
        &app,
        forged,
        |value| {
            // Reads, and changes to an empty session that store nothing.
            let (method, uri) = if value.len() % 2 == 0 {
                (Method::GET, "/get/k")
            } else {
                (Method::POST, "/remove/k")
            };
            (method, uri, Some(value.clone()))
        },
        |value, reply| {
            no_session_cookie(reply);
            if reply.body != "false" {
                assert_eq!(reply.body, "<none>", "{value}: anonymous");
            }
        },
    )
    .await;

    assert_eq!(
        store.total_loads(),
        loads,
        "a forged cookie never reaches the store"
    );
    assert_eq!(store.writes(), writes);
    assert_eq!(store.inner().len(), records);
    // The genuine session is untouched.
    assert_eq!(app.get("/get/k", Some(&genuine)).await.body, "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_unknown_signed_ids_load_once_each_and_are_never_adopted() {
    // The same key on another store mints validly signed cookies whose ids
    // the store under test has never seen.
    let mint = App::new(SessionLayer::new(MemoryStore::with_capacity(FLOOD), key(1)));
    let mut unknown = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        unknown.push(mint.start_session().await);
    }

    let (app, store) = tallied();
    flood(
        &app,
        unknown.clone(),
        |value| (Method::GET, "/get/k", Some(value.clone())),
        |value, reply| {
            assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
            assert_eq!(reply.body, "<none>", "{value}: unknown means anonymous");
            assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
        },
    )
    .await;

    let loads = store.loads();
    assert_eq!(loads.len(), FLOOD, "every unknown id was looked up");
    for value in &unknown {
        assert_eq!(
            loads.get(&support::id_of(value)),
            Some(&1),
            "exactly one load per request"
        );
    }
    assert_eq!(store.writes(), 0, "an unknown id creates nothing");
    assert_eq!(store.inner().len(), 0);

    // A write through an unknown id starts a session under a fresh id: the
    // presented one is never adopted.
    for value in unknown.iter().take(100) {
        let reply = app.post("/set/k/w", Some(value)).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let fresh = reply.session_value().expect("a write starts a session");
        assert_ne!(support::id_of(&fresh), support::id_of(value));
        assert!(support::stored(store.inner(), value).await.is_none());
    }
    assert_eq!(store.inner().len(), 100);
}
