//! Sessions for [tower] and [axum]: signed cookies, pluggable stores, and
//! saves that never lose a concurrent update.
//!
//! [`SessionLayer`] wraps any `tower::Service<http::Request<_>>`. For every
//! request it puts a [`LazySession`] in the extensions; the [`Session`]
//! extractor loads it (one store call, once per request) and then reads and
//! writes synchronously. When the response leaves the layer, the session is
//! saved if, and only if, something changed, and the cookie is set, rotated
//! or removed.
//!
//! # Quick start
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode, header};
//! use session_layer::{Key, MemoryStore, Session, SessionLayer};
//! use tower::ServiceExt as _;
//!
//! async fn count(session: Session) -> Result<String, session_layer::Error> {
//!     let visits = session.update("visits", |visits: Option<u64>| visits.unwrap_or(0) + 1)?;
//!     Ok(format!("{visits}"))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new()
//!     .route("/", get(count))
//!     .layer(SessionLayer::new(MemoryStore::default(), Key::generate()?));
//!
//! // The first visit creates the session and sets the cookie.
//! let first = app.clone().oneshot(Request::new(Body::empty())).await?;
//! assert_eq!(first.status(), StatusCode::OK);
//! let set_cookie = first.headers()[header::SET_COOKIE].to_str()?;
//! assert!(set_cookie.starts_with("id="));
//! assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("Secure"));
//! assert_eq!(first.headers()[header::CACHE_CONTROL], "no-store");
//!
//! // The browser sends the cookie back; the count goes on, and since the id
//! // did not change, no new cookie is sent.
//! let cookie = set_cookie.split(';').next().unwrap_or_default();
//! let request = Request::builder().header(header::COOKIE, cookie).body(Body::empty())?;
//! let second = app.oneshot(request).await?;
//! assert!(second.headers().get(header::SET_COOKIE).is_none());
//! assert_eq!(second.headers()[header::VARY], "Cookie");
//! let body = axum::body::to_bytes(second.into_body(), 64).await?;
//! assert_eq!(&body[..], b"2");
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `memory-store` | yes | [`MemoryStore`]: sharded, bounded, evicts expired sessions without scanning |
//! | `axum` | yes | the [`Session`] and [`LazySession`] extractors, [`SessionRejection`], `IntoResponse` for [`Error`] |
//! | `redis-store` | no | [`RedisStore`]: sessions shared by every instance of an app, on Redis or Redis Cluster, expired by Redis itself; re-exports the [`redis`] client crate |
//! | `postgres-store` | no | [`PostgresStore`]: sessions in a PostgreSQL table (via `sqlx`), shared by every instance of an app; [`CleanupHandle`] for the expiry task |
//! | `sqlite-store` | no | [`SqliteStore`]: sessions in an SQLite file that survives restarts, or in memory (via `sqlx`, SQLite bundled) |
//! | `tracing` | no | spans around load and save; events for tampered cookies, unknown ids, conflicts and store errors |
//! | `conformance` | no | `store::conformance`, the test suite every [`SessionStore`] must pass |
//!
//! # How saving works
//!
//! Every stored [`Record`] has a version. A save is a compare-and-set against
//! the version the request loaded. If another request saved first, the layer
//! reloads the record and re-applies this request's changes in order:
//! [`Session::insert`] sets its value again (so of two writes to one key the
//! later save wins), [`Session::update`] runs its closure again on the newer
//! value (so no increment is lost), and writes to different keys both
//! survive. If the record is gone (destroyed, rotated or expired) the changes
//! are dropped and the response becomes `409 Conflict`: a slow request never
//! brings back a session that was logged out.
//!
//! Store I/O happens only where it must: none for a route that does not
//! extract the session, one load when it does, one write when something
//! changed or the idle deadline is due for a refresh. A request without a
//! valid cookie that writes nothing creates nothing and gets no cookie.
//!
//! # Decisions worth knowing
//!
//! - **Timeouts.** A session ends after
//!   [`SessionLayer::DEFAULT_IDLE_TIMEOUT`] without a save or
//!   [`SessionLayer::DEFAULT_ABSOLUTE_TIMEOUT`] after creation, whichever
//!   comes first; both are checked by the layer on every load, whatever the
//!   store returns. A read-only request extends the idle deadline only once a
//!   quarter of the idle timeout has passed since the last write
//!   ([`SessionLayerBuilder::refresh_after`]), so readers do not turn into
//!   writers: a session that is only read survives as long as it is read at
//!   least every 22.5 minutes with the defaults. A shorter absolute timeout applies at once to existing
//!   sessions; a shorter idle timeout from each session's next save.
//! - **Cookie lifetime.** Cookies last for the browser session unless
//!   [`SessionLayerBuilder::persistent`] or [`Session::set_persistent`] asks
//!   for a persistent one, whose `Max-Age` is the time left until the server's
//!   own deadline, and is sent again whenever that deadline moves.
//! - **Failures.** A store failure on load rejects the extractor with `500`
//!   and leaves the browser's cookie alone. A failure on save replaces the
//!   handler's response ([`SessionLayerBuilder::on_save_error`]) and sends no
//!   `Set-Cookie`. Responses with a 5xx status save nothing
//!   ([`SessionLayerBuilder::save_if`]), but a [`Session::destroy`] is carried
//!   out whatever the status.
//! - **Several cookies with the session name** (say, one per path): the first
//!   that verifies wins; at most eight are checked.
//! - **Rotation.** [`Session::cycle_id`] gives the session a new id when the
//!   response is sent. The store's `rotate` creates the new record before it
//!   retires the old one, never the other way round.
//! - **Concurrent requests at sign-in.** For a grace period after a rotation
//!   ([`SessionLayerBuilder::rotation_grace`], 10 seconds by default), a
//!   request that still presents the old id reads the data as it was before,
//!   gets no cookie that could replace the new one, and creates no session
//!   in its place; its writes are refused with [`ErrorKind::IdRotated`]
//!   (after [`Session::renew_id`], applied to the renewed session), and a
//!   second sign-in signs in to a session of its own. It never learns the
//!   new id, so an id planted before sign-in stays worthless.
//! - **Caching.** Responses that read a stored session are
//!   `Cache-Control: no-store` and `destroy` sends
//!   `Clear-Site-Data: "cache"` ([`SessionLayerBuilder::no_store`],
//!   [`SessionLayerBuilder::clear_site_data`]), so Back after sign-out shows
//!   no signed-in page.
//! - **After [`Session::destroy`]**, values inserted in the same request start
//!   a new session with a new id, which carries a "signed out" message.
//!
//! # Security
//!
//! The cookie value is `base64url(id ‖ HMAC-SHA256(key, name ‖ id))`: 128
//! random bits from the operating system and a tag bound to the cookie name,
//! so a value minted for another cookie is refused. Only the canonical
//! 64-character encoding is accepted, and the tag is checked in constant time
//! before any store call. [`Key`], [`Id`] and [`Record`] never print their
//! secrets in `Debug`, and no log line carries a raw id.
//!
//! [tower]: https://docs.rs/tower
//! [axum]: https://docs.rs/axum
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod config;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod future;
// The fuzz target's and the property tests' way in; not a public API.
#[cfg(feature = "_fuzzing")]
#[doc(hidden)]
#[path = "fuzzing.rs"]
pub mod __fuzz;
mod id;
mod key;
mod layer;
mod lifetime;
mod load;
mod save;
mod service;
mod session;
mod session_cookie;
pub mod store;
mod trace;

pub use body::ResponseBody;
pub use config::SessionLayerBuilder;
pub use cookie::SameSite;
pub use error::{Error, ErrorKind};
#[cfg(feature = "axum")]
pub use extract::SessionRejection;
pub use future::ResponseFuture;
pub use id::Id;
pub use key::Key;
pub use layer::SessionLayer;
pub use load::LazySession;
/// The Redis client crate that [`RedisStore`] is built on, re-exported so
/// that connections you configure yourself have matching types.
#[cfg(feature = "redis-store")]
pub use redis;
pub use service::SessionService;
pub use session::Session;
#[cfg(feature = "memory-store")]
pub use store::memory::MemoryStore;
#[cfg(feature = "postgres-store")]
pub use store::postgres::{PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "redis-store")]
pub use store::redis::{RedisStore, RedisStoreBuilder};
#[cfg(any(feature = "postgres-store", feature = "sqlite-store"))]
pub use store::sql::{CleanupHandle, Dialect, SqlStore, SqlStoreBuilder};
#[cfg(feature = "sqlite-store")]
pub use store::sqlite::{SqliteStore, SqliteStoreBuilder};
pub use store::{Created, Record, Rotated, SessionStore, Updated};

/// Compiles the README's code blocks, so its quick start cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
