//! The layer's configuration: the builder with its validation, and the
//! runtime context every request of one layer shares.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cookie::SameSite;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};

use crate::body::{self, ErrorBody};
use crate::error::{Error, ErrorKind};
use crate::key::{Key, KeyRing};
use crate::lifetime::Lifetime;
use crate::session_cookie::{CookieConfig, HeaderPolicy};
use crate::store::SessionStore;

/// 30 minutes without a request end a session.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// 12 hours after creation a session ends, however active it is.
pub(crate) const DEFAULT_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);

/// How many times a save is tried against concurrent writers.
pub(crate) const DEFAULT_MAX_SAVE_ATTEMPTS: usize = 128;

/// How long a rotated-away id still answers: long enough for requests
/// already in flight when the rotation's response reached the browser.
pub(crate) const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(10);

/// The longest grace period accepted: a replaced id that answers for
/// longer is an id that was not really replaced.
pub(crate) const MAX_ROTATION_GRACE: Duration = Duration::from_secs(60);

/// Browsers cap a cookie's lifetime at 400 days.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(400 * 24 * 60 * 60);

/// A read-only request refreshes the idle deadline once this share of the
/// idle timeout has passed since the last write, unless told otherwise.
const DEFAULT_REFRESH_DIVISOR: u32 = 4;

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;
type SavePredicate = Arc<dyn Fn(StatusCode) -> bool + Send + Sync>;
type ErrorResponse = Arc<dyn Fn(&Error) -> Response<ErrorBody> + Send + Sync>;

/// What every request of one layer shares.
pub(crate) struct Config {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) cookie: CookieConfig,
    pub(crate) ring: KeyRing,
    pub(crate) lifetime: Lifetime,
    pub(crate) max_save_attempts: usize,
    /// How long a rotation leaves the old id answering.
    pub(crate) rotation_grace: Duration,
    pub(crate) headers: HeaderPolicy,
    clock: Clock,
    save_if: SavePredicate,
    on_error: ErrorResponse,
}

impl Config {
    /// Returns the layer's time.
    pub(crate) fn now(&self) -> SystemTime {
        (self.clock)()
    }

    /// Returns whether a response with `status` saves the session.
    pub(crate) fn saves(&self, status: StatusCode) -> bool {
        (self.save_if)(status)
    }

    /// Returns the response that replaces the handler's after `error`.
    pub(crate) fn error_response(&self, error: &Error) -> Response<ErrorBody> {
        (self.on_error)(error)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("cookie", &self.cookie)
            .field("lifetime", &self.lifetime)
            .field("max_save_attempts", &self.max_save_attempts)
            .finish_non_exhaustive()
    }
}

/// The configuration of a [`SessionLayer`](crate::SessionLayer), checked
/// as a whole by [`build`](Self::build).
///
/// Every setter takes any value; nothing fails until `build`, which names
/// what is wrong.
///
/// ```
/// use std::time::Duration;
/// use session_layer::{Key, MemoryStore, SameSite, SessionLayer};
///
/// let layer = SessionLayer::builder(MemoryStore::default(), Key::generate()?)
///     .cookie_name("__Host-id")
///     .same_site(SameSite::Strict)
///     .idle_timeout(Duration::from_secs(15 * 60))
///     .build()?;
///
/// // `__Host-` cookies must not name a domain: refused when built.
/// let refused = SessionLayer::builder(MemoryStore::default(), Key::generate()?)
///     .cookie_name("__Host-id")
///     .domain("example.com")
///     .build();
/// assert!(refused.is_err());
/// # Ok::<(), session_layer::Error>(())
/// ```
#[must_use]
pub struct SessionLayerBuilder {
    store: Arc<dyn SessionStore>,
    key: Key,
    fallback_keys: Vec<Key>,
    cookie: CookieConfig,
    idle: Duration,
    absolute: Duration,
    /// `None`: a quarter of the idle timeout, whatever it is set to.
    refresh_after: Option<Duration>,
    persistent: bool,
    max_save_attempts: usize,
    rotation_grace: Duration,
    headers: HeaderPolicy,
    clock: Clock,
    save_if: SavePredicate,
    on_error: ErrorResponse,
}

impl SessionLayerBuilder {
    /// Starts from the defaults.
    pub(crate) fn new(store: Arc<dyn SessionStore>, key: Key) -> Self {
        Self {
            store,
            key,
            fallback_keys: Vec::new(),
            cookie: CookieConfig::default(),
            idle: DEFAULT_IDLE_TIMEOUT,
            absolute: DEFAULT_ABSOLUTE_TIMEOUT,
            refresh_after: None,
            persistent: false,
            max_save_attempts: DEFAULT_MAX_SAVE_ATTEMPTS,
            rotation_grace: DEFAULT_ROTATION_GRACE,
            headers: HeaderPolicy::default(),
            clock: Arc::new(SystemTime::now),
            save_if: Arc::new(|status| !status.is_server_error()),
            on_error: Arc::new(default_error_response),
        }
    }

    /// Sets the cookie name (default `id`). A `__Host-` or `__Secure-` name
    /// brings that prefix's rules, checked by [`build`](Self::build).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie.name = name.into();
        self
    }

    /// Sets the `Secure` attribute (default `true`): the browser sends the
    /// cookie over HTTPS only.
    ///
    /// Chromium and Firefox also keep `Secure` cookies from
    /// `http://localhost` and `http://127.0.0.1`, so local development works
    /// with the default there. Safari does not: for plain-HTTP development in
    /// Safari, set `false` in the development build only.
    pub fn secure(mut self, secure: bool) -> Self {
        self.cookie.secure = secure;
        self
    }

    /// Sets the `HttpOnly` attribute (default `true`).
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.cookie.http_only = http_only;
        self
    }

    /// Sets the `SameSite` attribute (default `Lax`). `None` requires `Secure`.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.cookie.same_site = same_site;
        self
    }

    /// Sets the `Path` attribute (default `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.cookie.path = path.into();
        self
    }

    /// Sets the `Domain` attribute (default: none, so the cookie goes back
    /// only to the host that set it).
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.cookie.domain = Some(domain.into());
        self
    }

    /// Chooses the cookie lifetime of new sessions: `false` (the default) for
    /// a cookie the browser drops when it closes, `true` for a persistent one.
    /// Each session can change it with
    /// [`Session::set_persistent`](crate::Session::set_persistent).
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// Adds a key that verifies cookies but no longer signs them. Cookies it
    /// verifies are re-issued under the primary key, so a retired key can be
    /// dropped once the sessions it signed have expired.
    pub fn fallback_key(mut self, key: Key) -> Self {
        self.fallback_keys.push(key);
        self
    }

    /// Sets the idle timeout (default 30 minutes): a session unused for this
    /// long ends.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle = timeout;
        self
    }

    /// Sets the absolute timeout (default 12 hours): a session ends this long
    /// after it was created, however active it is.
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.absolute = timeout;
        self
    }

    /// Sets how long after the last write a request that changes nothing
    /// writes to the store to extend the session (default: a quarter of the
    /// idle timeout). It must be shorter than the idle timeout; zero
    /// refreshes on every request.
    ///
    /// The throttle trades writes for slack: a session that is only read
    /// stays alive as long as it is read at least every
    /// `idle timeout - refresh_after` (22.5 minutes with the defaults); a
    /// request that writes always restarts the full idle timeout.
    pub fn refresh_after(mut self, after: Duration) -> Self {
        self.refresh_after = Some(after);
        self
    }

    /// Sets how many times a save is tried when concurrent requests keep
    /// saving the same session first (default 128). Each retry reloads the
    /// session and re-applies this request's changes; when they run out the
    /// response becomes an error of kind [`ErrorKind::Conflict`].
    pub fn max_save_attempts(mut self, attempts: usize) -> Self {
        self.max_save_attempts = attempts;
        self
    }

    /// Sets how long an id that [`Session::cycle_id`](crate::Session::cycle_id)
    /// or [`Session::renew_id`](crate::Session::renew_id) replaced still
    /// answers (default 10 seconds; at most a minute; zero deletes it at
    /// once).
    ///
    /// A sign-in rotates the id, but the browser may already have sent
    /// other requests with the old one: another tab, a background fetch, a
    /// double submit. During the grace period such a request is not a
    /// stranger: it reads the data as it was before the rotation, gets no
    /// cookie that could replace the new one, and creates no session in its
    /// place. After `cycle_id` its changes are refused with
    /// [`ErrorKind::IdRotated`]; after `renew_id` they are applied to the
    /// renewed session. It never learns the new id, so an id planted before
    /// sign-in gives its planter nothing: only what the planter already had,
    /// for a few seconds.
    ///
    /// Ten seconds cover requests in flight on a slow connection; a longer
    /// period only prolongs how long a replaced id answers.
    pub fn rotation_grace(mut self, grace: Duration) -> Self {
        self.rotation_grace = grace;
        self
    }

    /// Marks every response that read a stored session
    /// `Cache-Control: no-store` (default `true`), so the browser keeps no
    /// copy of a signed-in page: after sign-out, Back shows no page of the
    /// session that ended. Responses that set or remove the session cookie
    /// are always `no-store`, whatever this says.
    ///
    /// Turn it off only for an app whose pages show nothing of the session
    /// worth hiding, and mark the sensitive ones yourself.
    pub fn no_store(mut self, no_store: bool) -> Self {
        self.headers.no_store = no_store;
        self
    }

    /// Sends `Clear-Site-Data: "cache"` with the response of a
    /// [`destroy`](crate::Session::destroy) of a stored session (default
    /// `true`), so the browser drops what it cached while signed in.
    ///
    /// It clears the whole origin's HTTP cache in that browser, static
    /// assets included, which then load again on the next visit.
    pub fn clear_site_data(mut self, clear: bool) -> Self {
        self.headers.clear_site_data = clear;
        self
    }

    /// Decides from the response status whether the session is saved
    /// (default: not for 5xx). A [`destroy`](crate::Session::destroy) is
    /// carried out whatever the status: ending a session is always safe.
    pub fn save_if(
        mut self,
        predicate: impl Fn(StatusCode) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.save_if = Arc::new(predicate);
        self
    }

    /// Sets the response sent instead of the handler's when saving the
    /// session fails: anything an axum handler may return. Such a response
    /// never carries the session cookie.
    ///
    /// The default answers [`Error::status`] (`409 Conflict` when a
    /// concurrent logout or repeated conflicts discarded the changes, `500`
    /// otherwise) with the error's message as plain text.
    ///
    /// ```
    /// use axum::response::{Html, IntoResponse};
    /// use session_layer::{Error, Key, MemoryStore, SessionLayer};
    ///
    /// let layer = SessionLayer::builder(MemoryStore::default(), Key::generate()?)
    ///     .on_save_error(|error: &Error| {
    ///         (error.status(), Html("<h1>Please try again</h1>")).into_response()
    ///     })
    ///     .build()?;
    /// # Ok::<(), session_layer::Error>(())
    /// ```
    #[cfg(feature = "axum")]
    pub fn on_save_error<R>(mut self, respond: impl Fn(&Error) -> R + Send + Sync + 'static) -> Self
    where
        R: axum_core::response::IntoResponse,
    {
        self.on_error = Arc::new(move |error| respond(error).into_response().map(body::boxed));
        self
    }

    /// Sets the response sent instead of the handler's when saving the
    /// session fails. Such a response never carries the session cookie.
    ///
    /// The default answers [`Error::status`] (`409 Conflict` when a
    /// concurrent logout or repeated conflicts discarded the changes, `500`
    /// otherwise) with the error's message as plain text.
    #[cfg(not(feature = "axum"))]
    pub fn on_save_error<B>(
        mut self,
        respond: impl Fn(&Error) -> Response<B> + Send + Sync + 'static,
    ) -> Self
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<body::BoxError>,
    {
        self.on_error = Arc::new(move |error| respond(error).map(body::boxed));
        self
    }

    /// Replaces the wall clock the layer reads deadlines from (tests use it
    /// to move time forward).
    pub fn clock(mut self, now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(now);
        self
    }

    /// Checks the configuration as a whole.
    pub(crate) fn validate(self) -> Result<Config, Error> {
        let fail = |message| Err(Error::message(ErrorKind::Config, message));
        self.cookie.validate()?;
        for timeout in [self.idle, self.absolute] {
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                return fail("timeouts must be longer than zero and at most 400 days");
            }
        }
        if self.refresh_after.is_some_and(|after| after >= self.idle) {
            return fail("the refresh must fall due before the idle timeout ends");
        }
        if self.max_save_attempts == 0 {
            return fail("at least one save attempt is needed");
        }
        if self.rotation_grace > MAX_ROTATION_GRACE {
            return fail("the rotation grace period must be at most a minute");
        }
        Ok(self.assemble())
    }

    /// Returns the runtime configuration without checking it: for the
    /// defaults, which are valid.
    pub(crate) fn assemble(self) -> Config {
        let ring = KeyRing::new(&self.key, &self.fallback_keys, &self.cookie.name);
        let lifetime = Lifetime {
            idle: self.idle,
            absolute: self.absolute,
            refresh_after: self
                .refresh_after
                .unwrap_or(self.idle / DEFAULT_REFRESH_DIVISOR),
            persistent: self.persistent,
        };
        Config {
            store: self.store,
            cookie: self.cookie,
            ring,
            lifetime,
            max_save_attempts: self.max_save_attempts,
            rotation_grace: self.rotation_grace,
            headers: self.headers,
            clock: self.clock,
            save_if: self.save_if,
            on_error: self.on_error,
        }
    }
}

impl fmt::Debug for SessionLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayerBuilder")
            .field("cookie", &self.cookie)
            .field("idle", &self.idle)
            .field("absolute", &self.absolute)
            .field("refresh_after", &self.refresh_after)
            .field("persistent", &self.persistent)
            .field("max_save_attempts", &self.max_save_attempts)
            .field("rotation_grace", &self.rotation_grace)
            .field("headers", &self.headers)
            .field("fallback_keys", &self.fallback_keys.len())
            .finish_non_exhaustive()
    }
}

/// [`Error::status`] with the error's message as plain text, which names no
/// id.
fn default_error_response(error: &Error) -> Response<ErrorBody> {
    let mut response = Response::new(body::boxed(format!("{error}\n")));
    *response.status_mut() = error.status();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
