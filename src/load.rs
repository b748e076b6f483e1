//! Loading a request's session: cookie lookup, then one store load, then
//! the liveness check, then the [`Session`] handle.
//!
//! The cookie is verified before any store call; a request whose cookie is
//! missing, tampered with or unknown gets a new empty session, never an id it
//! chose.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderValue, header::COOKIE};
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::error::Error;
use crate::key::Verified;
use crate::session::Session;
use crate::session_cookie::codec::{self, Found};
use crate::trace::{event, in_span};

/// The session of a request, not loaded yet.
///
/// The layer puts one in every request's extensions. Loading it costs one
/// store call (none if the request has no valid cookie); axum's [`Session`]
/// extractor does exactly that. Code outside axum loads it itself:
///
/// ```
/// # async fn handle(request: http::Request<()>) -> Result<(), session_layer::Error> {
/// use session_layer::LazySession;
///
/// let lazy = request.extensions().get::<LazySession>().expect("SessionLayer is installed");
/// let session = lazy.load().await?;
/// session.insert("seen", true)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LazySession {
    inner: Arc<Lazy>,
}

struct Lazy {
    config: Arc<Config>,
    /// The request's `Cookie` headers, parsed and verified only on load, so a
    /// route that never touches the session pays for neither. A request has
    /// one such line or none, kept without a `Vec` of its own; a clone of a
    /// `HeaderValue` shares the request's buffer.
    cookie: Option<HeaderValue>,
    more_cookies: Vec<HeaderValue>,
    session: OnceCell<Session>,
    /// A load was tried, even if it failed: the response depends on the
    /// cookie either way.
    attempted: AtomicBool,
}

impl LazySession {
    pub(crate) fn new(config: Arc<Config>, headers: &HeaderMap) -> Self {
        let mut cookies = headers.get_all(COOKIE).iter().cloned();
        Self {
            inner: Arc::new(Lazy {
                config,
                cookie: cookies.next(),
                // Empty, and so not allocated, unless there are more lines.
                more_cookies: cookies.collect(),
                session: OnceCell::new(),
                attempted: AtomicBool::new(false),
            }),
        }
    }

    /// Loads the session, once per request: later calls return the same
    /// handle without touching the store.
    ///
    /// A missing, tampered or unverifiable cookie gives a new empty session
    /// without any store call. An unknown or expired id gives a new empty
    /// session too; it is never adopted, and if the request saves anything
    /// the session gets a fresh id.
    ///
    /// # Errors
    ///
    /// Fails if the store fails, or with [`ErrorKind::Deserialize`](crate::ErrorKind::Deserialize) if the
    /// stored record is corrupt. The layer then sends no cookie, so the
    /// browser keeps the one it has.
    pub async fn load(&self) -> Result<Session, Error> {
        self.inner.attempted.store(true, Ordering::Relaxed);
        self.inner
            .session
            .get_or_try_init(|| in_span!("session.load", self.inner.load()))
            .await
            .cloned()
    }

    /// Returns whether the request tried to load the session.
    pub(crate) fn attempted(&self) -> bool {
        self.inner.attempted.load(Ordering::Relaxed)
    }

    /// Returns the session if it was loaded during this request.
    pub(crate) fn loaded(&self) -> Option<&Session> {
        self.inner.session.get()
    }

    pub(crate) fn config(&self) -> &Arc<Config> {
        &self.inner.config
    }
}

impl Drop for Lazy {
    fn drop(&mut self) {
        if let Some(session) = self.session.get() {
            session.forget_changes();
        }
    }
}

impl Lazy {
    async fn load(&self) -> Result<Session, Error> {
        let config = &self.config;
        let cookies = self.cookie.iter().chain(&self.more_cookies);
        let (id, verified) = match codec::find(cookies, &config.cookie.name, &config.ring) {
            Found::Valid(id, verified) => (id, verified),
            Found::Invalid => {
                event!(
                    warn,
                    "session cookie failed verification; treating the request as anonymous"
                );
                return Ok(self.fresh(None));
            }
            Found::Absent => return Ok(self.fresh(None)),
        };
        let record = config.store.load(&id).await.inspect_err(|_error| {
            event!(error, error = %crate::trace::Chain(_error), "failed to load the session");
        })?;
        let now = config.now();
        match record {
            Some(record) if record.id == id && config.lifetime.is_alive(&record, now) => {
                Session::loaded(record, verified, now, config.lifetime.persistent)
            }
            Some(_) => {
                event!(debug, session = %crate::trace::Fingerprint(&id), "session expired");
                Ok(self.fresh(Some(verified)))
            }
            None => {
                event!(debug, session = %crate::trace::Fingerprint(&id), "unknown session id");
                Ok(self.fresh(Some(verified)))
            }
        }
    }

    fn fresh(&self, presented: Option<Verified>) -> Session {
        Session::fresh(presented, self.config.lifetime.persistent)
    }
}

impl fmt::Debug for LazySession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazySession")
            .field("loaded", &self.loaded().is_some())
            .finish_non_exhaustive()
    }
}
