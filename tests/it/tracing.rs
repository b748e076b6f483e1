//! What the layer logs with the `tracing` feature: the
//! events and spans it promises, captured per test, and never a raw id, a
//! cookie value or a key.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::support;
use crate::support::{App, CountingStore, FaultyStore, Op, id_of, join, spawn_post};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use session_layer::{Key, MemoryStore, SessionLayer, SessionStore};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The byte every key in this file is made of.
const KEY_BYTE: u8 = 0x5A;

fn key() -> Key {
    Key::from_bytes(&[KEY_BYTE; 32]).expect("32 bytes make a key")
}

/// An in-memory log: every line the fmt layer writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn buffer(&self) -> MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer()).into_owned()
    }

    /// Returns the lines at `level` (`"WARN"`, `"DEBUG"`, …) that contain
    /// `needle`.
    /// Returns the span events (`"new"` or `"close"`) of the spans named
    /// `span`.
    fn span_events(&self, span: &str, what: &str) -> Vec<String> {
        self.lines("DEBUG", &format!("{span}: "))
            .into_iter()
            .filter(|line| {
                line.ends_with(&format!(": {what}")) || line.contains(&format!(": {what} time."))
            })
            .collect()
    }

    fn lines(&self, level: &str, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.split_whitespace().any(|word| word == level))
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs a TRACE-level fmt subscriber for the current thread (the tests
/// run on a current-thread runtime, so it sees every task of the test).
fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let guard = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(LevelFilter::TRACE)
        .with_ansi(false)
        .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
        .finish()
        .set_default();
    (capture, guard)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Checks that the log holds none of the secrets of these cookie values (the
/// values themselves and their ids in every text form) nor the key.
fn assert_no_secrets(capture: &Capture, cookie_values: &[&str]) {
    let text = capture.text();
    assert!(!text.is_empty(), "something was logged");
    let key = [KEY_BYTE; 32];
    let mut secrets = vec![
        hex(&key),
        hex(&key).to_uppercase(),
        STANDARD.encode(key),
        URL_SAFE_NO_PAD.encode(key),
    ];
    for value in cookie_values {
        let id = id_of(value);
        secrets.push((*value).to_owned());
        secrets.push(id.expose());
        secrets.push(STANDARD_NO_PAD.encode(id.as_bytes()));
        secrets.push(URL_SAFE.encode(id.as_bytes()));
        secrets.push(hex(id.as_bytes()));
        secrets.push(format!("{:?}", id.as_bytes()));
    }
    for secret in secrets {
        assert!(
            !text.contains(&secret),
            "the log leaks a secret ({secret}):\n{text}"
        );
    }
}

/// Replaces the character at `index` with another base64url character.
fn flip(value: &str, index: usize) -> String {
    let mut bytes = value.as_bytes().to_vec();
    let byte = bytes.get_mut(index).expect("index inside the value");
    *byte = if *byte == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII")
}

/// Returns the values of every `session=` field in `line`.
fn session_fields(line: &str) -> Vec<&str> {
    line.split_whitespace()
        .filter_map(|word| word.strip_prefix("session="))
        .collect()
}

#[tokio::test]
async fn a_forged_cookie_warns_without_a_store_load() {
    let (capture, _guard) = capture();
    let store = CountingStore::new(MemoryStore::default());
    let app = App::new(SessionLayer::new(store.clone(), key()));
    let value = app.start_session().await;
    assert!(
        capture.lines("WARN", "").is_empty(),
        "no warning for a valid session:\n{}",
        capture.text()
    );

    let loads = store.loads();
    let forged = flip(&value, 60);
    let reply = app.get("/get/k", Some(&forged)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "<none>");
    assert_eq!(store.loads(), loads, "no store load for a forged cookie");
    let warnings = capture.lines("WARN", "verification");
    assert_eq!(warnings.len(), 1, "{}", capture.text());

    // A forged id under a genuine tag is refused the same way.
    let forged_id = flip(&value, 3);
    assert_eq!(app.get("/get/k", Some(&forged_id)).await.body, "<none>");
    assert_eq!(store.loads(), loads);
    assert_eq!(capture.lines("WARN", "verification").len(), 2);

    assert_no_secrets(&capture, &[&value, &forged, &forged_id]);
}

#[tokio::test]
async fn an_unknown_id_logs_a_short_fingerprint_at_debug() {
    let (capture, _guard) = capture();
    let memory = MemoryStore::default();
    let app = App::new(SessionLayer::new(memory.clone(), key()));
    let value = app.start_session().await;
    memory
        .delete(&id_of(&value))
        .await
        .expect("the memory store does not fail");

    let reply = app.get("/get/k", Some(&value)).await;
    assert_eq!(reply.body, "<none>");
    let lines = capture.lines("DEBUG", "unknown session id");
    assert_eq!(lines.len(), 1, "{}", capture.text());
    let line = lines.first().expect("one line");
    let fields = session_fields(line);
    assert_eq!(fields.len(), 1, "{line}");
    let fingerprint = fields.first().expect("one field").to_owned();
    assert_eq!(fingerprint.len(), 12, "{line}");
    assert!(
        fingerprint
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)),
        "12 lower-case hex characters: {line}"
    );
    assert_ne!(
        fingerprint,
        &hex(id_of(&value).as_bytes())[..12],
        "a hash, not a prefix of the id"
    );

    // The same id gives the same fingerprint, so a session can be followed.
    app.get("/get/k", Some(&value)).await;
    let lines = capture.lines("DEBUG", "unknown session id");
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines.last().map(|line| session_fields(line)),
        Some(vec![fingerprint])
    );

    assert_no_secrets(&capture, &[&value]);
}

#[tokio::test]
async fn a_save_conflict_logs_a_debug_event() {
    let (capture, _guard) = capture();
    let memory = MemoryStore::default();
    let faulty = FaultyStore::new(memory.clone());
    let app = App::new(SessionLayer::new(faulty.clone(), key()));
    let value = app.start_session().await;
    assert!(capture.lines("DEBUG", "conflict").is_empty());

    // A's write waits until B has saved: A's compare-and-set fails.
    let at_update = faulty.hold_next(Op::Update);
    let slow = spawn_post(&app, "/incr", &value);
    at_update.reached().await;
    assert_eq!(app.post("/incr", Some(&value)).await.body, "1");
    at_update.open();
    let reply = join(slow).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(app.get("/n", Some(&value)).await.body, "2");

    let lines = capture.lines("DEBUG", "conflict");
    assert_eq!(lines.len(), 1, "{}", capture.text());
    let line = lines.first().expect("one line");
    assert_eq!(
        session_fields(line).first().map(|field| field.len()),
        Some(12),
        "{line}"
    );
    assert!(
        line.contains("session.save"),
        "inside the save span: {line}"
    );

    assert_no_secrets(&capture, &[&value]);
}

#[tokio::test]
async fn store_failures_log_an_error_with_the_source() {
    let (capture, _guard) = capture();
    let memory = MemoryStore::default();
    let faulty = FaultyStore::new(memory.clone());
    let app = App::new(SessionLayer::new(faulty.clone(), key()));
    let value = app.start_session().await;
    assert!(capture.lines("ERROR", "").is_empty());

    faulty.fail(Op::Update, true);
    let reply = app.post("/set/k/lost", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let lines = capture.lines("ERROR", "injected Update failure");
    assert_eq!(lines.len(), 1, "{}", capture.text());
    faulty.fail(Op::Update, false);

    faulty.fail(Op::Load, true);
    let reply = app.get("/get/k", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let lines = capture.lines("ERROR", "injected Load failure");
    assert_eq!(lines.len(), 1, "{}", capture.text());
    faulty.fail(Op::Load, false);

    faulty.fail(Op::Create, true);
    let reply = app.post("/set/k/v", None).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let lines = capture.lines("ERROR", "injected Create failure");
    assert_eq!(lines.len(), 1, "{}", capture.text());

    assert_no_secrets(&capture, &[&value]);
}

#[tokio::test]
async fn load_and_save_run_in_spans() {
    let (capture, _guard) = capture();
    let memory = MemoryStore::default();
    let app = App::new(SessionLayer::new(memory.clone(), key()));
    let value = app.start_session().await;
    assert_eq!(
        app.post("/set/k/w", Some(&value)).await.status,
        StatusCode::OK
    );
    let reply = app.post("/cycle", Some(&value)).await;
    let new = reply.session_value().expect("a new id");
    assert_eq!(
        app.post("/destroy", Some(&new)).await.status,
        StatusCode::OK
    );

    for span in ["session.load", "session.save"] {
        let opened = capture.span_events(span, "new");
        let closed = capture.span_events(span, "close");
        assert!(!opened.is_empty(), "{span} opened:\n{}", capture.text());
        assert_eq!(opened.len(), closed.len(), "{span}:\n{}", capture.text());
    }
    // One load per request that extracts the session; one save per write.
    assert_eq!(capture.span_events("session.load", "new").len(), 4);
    assert_eq!(capture.span_events("session.save", "new").len(), 4);

    assert_no_secrets(&capture, &[&value, &new]);
}

#[tokio::test]
async fn nothing_logged_across_every_path_reveals_an_id_a_cookie_or_the_key() {
    let (capture, _guard) = capture();
    let memory = MemoryStore::default();
    let faulty = FaultyStore::new(memory.clone());
    let app = App::new(support::no_grace(faulty.clone(), key()));

    let value = app.start_session().await;
    let forged = flip(&value, 50);
    app.get("/get/k", Some(&forged)).await;
    // Conflict.
    let at_update = faulty.hold_next(Op::Update);
    let slow = spawn_post(&app, "/incr", &value);
    at_update.reached().await;
    app.post("/incr", Some(&value)).await;
    at_update.open();
    join(slow).await;
    // Rotation, then a read of the dead id (unknown), then store errors.
    let new = app
        .post("/cycle", Some(&value))
        .await
        .session_value()
        .expect("a new id");
    app.get("/get/k", Some(&value)).await;
    faulty.fail(Op::Load, true);
    app.get("/get/k", Some(&new)).await;
    faulty.fail(Op::Load, false);
    faulty.fail(Op::Update, true);
    app.post("/set/k/x", Some(&new)).await;
    faulty.fail(Op::Update, false);
    // A concurrent logout discards a slow write.
    let at_update = faulty.hold_next(Op::Update);
    let slow = spawn_post(&app, "/set/k/late", &new);
    at_update.reached().await;
    app.post("/destroy", Some(&new)).await;
    at_update.open();
    assert_eq!(join(slow).await.status, StatusCode::CONFLICT);

    for (level, needle) in [
        ("WARN", "verification"),
        ("DEBUG", "conflict"),
        ("DEBUG", "unknown session id"),
        ("ERROR", "injected Load failure"),
        ("ERROR", "injected Update failure"),
        ("DEBUG", "session.load"),
        ("DEBUG", "session.save"),
    ] {
        assert!(
            !capture.lines(level, needle).is_empty(),
            "{level} {needle}:\n{}",
            capture.text()
        );
    }
    assert_no_secrets(&capture, &[&value, &forged, &new]);
}
