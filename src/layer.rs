//! `SessionLayer`: the configuration and the `tower::Layer`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cookie::SameSite;
use http::{Response, StatusCode, header::CONTENT_TYPE};
use tower_layer::Layer;

use crate::config::CookieConfig;
use crate::error::{Error, ErrorKind};
use crate::key::{Key, KeyRing};
use crate::service::SessionService;
use crate::store::{Record, SessionStore};

/// The default idle timeout: 30 minutes without a request ends a session.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The default absolute timeout: 12 hours after creation a session ends,
/// however active it is.
pub const DEFAULT_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);

/// The default share of the idle timeout that must pass before a read-only
/// request writes to the store to extend it.
pub const DEFAULT_REFRESH_AFTER: f64 = 0.25;

/// The default number of times a save is tried against concurrent writers.
pub const DEFAULT_MAX_SAVE_ATTEMPTS: usize = 128;

/// The longest timeout accepted: browsers cap a cookie's lifetime at 400 days.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(400 * 24 * 60 * 60);

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;
type SavePredicate = Arc<dyn Fn(StatusCode) -> bool + Send + Sync>;
type ErrorResponse = Arc<dyn Fn(&Error) -> Response<String> + Send + Sync>;

/// A [`Layer`] that gives every request a session.
///
/// It reads and verifies the session cookie, hands the request a
/// [`LazySession`](crate::LazySession) that loads the session on first use,
/// and once the response is ready saves what changed and writes the cookie.
///
/// ```
/// use axum::{Router, routing::get};
/// use session_layer::{Key, MemoryStore, SessionLayer};
///
/// let key = Key::generate()?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(SessionLayer::new(MemoryStore::default(), key));
/// # Ok::<(), session_layer::Error>(())
/// ```
///
/// Use [`SessionLayer::builder`] to change the cookie or the timeouts.
#[derive(Clone)]
#[must_use]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

/// What every request of one layer shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) cookie: CookieConfig,
    pub(crate) ring: KeyRing,
    pub(crate) lifetime: Lifetime,
    pub(crate) max_save_attempts: usize,
    clock: Clock,
    save_if: SavePredicate,
    on_error: ErrorResponse,
}

/// The two clocks of a session and the refresh throttle (SPEC §5).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetime {
    pub(crate) idle: Duration,
    pub(crate) absolute: Duration,
    /// How long after a refresh the next one is due.
    pub(crate) refresh_after: Duration,
    /// Whether new sessions get a persistent cookie.
    pub(crate) persistent: bool,
}

impl Lifetime {
    /// Returns the deadline of a session created at `created_at` and active
    /// at `now`: the earlier of the two clocks.
    pub(crate) fn deadline(&self, created_at: SystemTime, now: SystemTime) -> SystemTime {
        let idle = now.checked_add(self.idle);
        let absolute = created_at.checked_add(self.absolute);
        match (idle, absolute) {
            (Some(idle), Some(absolute)) => idle.min(absolute),
            // Only a nonsensical stored time overflows; such a session is
            // already over.
            _ => now,
        }
    }

    /// Returns whether `record` is still valid at `now` under this
    /// configuration, whatever the store thinks.
    pub(crate) fn is_alive(&self, record: &Record, now: SystemTime) -> bool {
        now < record.expires_at
            && record
                .created_at
                .checked_add(self.absolute)
                .is_some_and(|absolute| now < absolute)
    }

    /// Returns whether a read-only request should extend the idle deadline.
    pub(crate) fn refresh_due(
        &self,
        created_at: SystemTime,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> bool {
        let remaining = expires_at.duration_since(now).unwrap_or_default();
        let since_refresh = self.idle.saturating_sub(remaining);
        since_refresh >= self.refresh_after && self.deadline(created_at, now) > expires_at
    }
}

impl Shared {
    pub(crate) fn now(&self) -> SystemTime {
        (self.clock)()
    }

    pub(crate) fn saves(&self, status: StatusCode) -> bool {
        (self.save_if)(status)
    }

    pub(crate) fn error_response(&self, error: &Error) -> Response<String> {
        (self.on_error)(error)
    }
}

impl SessionLayer {
    /// Creates a layer with the default configuration: a cookie named `id`,
    /// `HttpOnly`, `Secure`, `SameSite=Lax`, `Path=/`, lasting for the
    /// browser session; a 30-minute idle and a 12-hour absolute timeout.
    pub fn new(store: impl SessionStore, key: Key) -> Self {
        Self::builder(store, key).assemble()
    }

    /// Starts a configuration from the defaults of [`SessionLayer::new`].
    pub fn builder(store: impl SessionStore, key: Key) -> SessionLayerBuilder {
        SessionLayerBuilder {
            store: Arc::new(store),
            key,
            fallback_keys: Vec::new(),
            cookie: CookieConfig::default(),
            idle: DEFAULT_IDLE_TIMEOUT,
            absolute: DEFAULT_ABSOLUTE_TIMEOUT,
            refresh_after: DEFAULT_REFRESH_AFTER,
            persistent: false,
            max_save_attempts: DEFAULT_MAX_SAVE_ATTEMPTS,
            clock: Arc::new(SystemTime::now),
            save_if: Arc::new(|status| !status.is_server_error()),
            on_error: Arc::new(default_error_response),
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::new(inner, Arc::clone(&self.shared))
    }
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("cookie", &self.shared.cookie)
            .field("lifetime", &self.shared.lifetime)
            .finish_non_exhaustive()
    }
}

/// The configuration of a [`SessionLayer`], checked as a whole by
/// [`build`](Self::build).
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
    refresh_after: f64,
    persistent: bool,
    max_save_attempts: usize,
    clock: Clock,
    save_if: SavePredicate,
    on_error: ErrorResponse,
}

impl SessionLayerBuilder {
    /// Sets the cookie name (default `id`). A `__Host-` or `__Secure-` name
    /// brings that prefix's rules, checked by [`build`](Self::build).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie.name = name.into();
        self
    }

    /// Sets the `Secure` attribute (default `true`). Browsers accept secure
    /// cookies from `http://localhost`, so development rarely needs `false`.
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

    /// Sets the share of the idle timeout (from `0.0` up to, not including,
    /// `1.0`; default `0.25`) that must pass before a request that changes
    /// nothing writes to the store to extend the session. `0.0` refreshes on
    /// every request.
    ///
    /// The throttle trades writes for slack: a session that is only read
    /// stays alive as long as it is read at least every
    /// `(1 - share) × idle timeout` (22.5 minutes with the defaults); a
    /// request that writes always restarts the full idle timeout.
    pub fn refresh_after(mut self, share: f64) -> Self {
        self.refresh_after = share;
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

    /// Sets the response sent instead of the handler's when saving the session
    /// fails (default: `500 Internal Server Error`, or `409 Conflict` when a
    /// concurrent logout or repeated conflicts discarded the changes). Such a
    /// response never carries the session cookie.
    pub fn on_save_error(
        mut self,
        respond: impl Fn(&Error) -> Response<String> + Send + Sync + 'static,
    ) -> Self {
        self.on_error = Arc::new(respond);
        self
    }

    /// Replaces the wall clock the layer reads deadlines from (tests use it
    /// to move time forward).
    pub fn clock(mut self, now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(now);
        self
    }

    /// Checks the configuration and returns the layer.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Config`] on an invalid cookie attribute, a
    /// broken prefix rule (`__Host-`, `__Secure-`), `SameSite=None` without
    /// `Secure`, a zero or over-long timeout, a refresh share outside
    /// `0.0..1.0`, or zero save attempts.
    pub fn build(self) -> Result<SessionLayer, Error> {
        let fail = |message| Err(Error::message(ErrorKind::Config, message));
        self.cookie.validate()?;
        for timeout in [self.idle, self.absolute] {
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                return fail("timeouts must be longer than zero and at most 400 days");
            }
        }
        if !(0.0..1.0).contains(&self.refresh_after) {
            return fail("the refresh share must be at least 0.0 and less than 1.0");
        }
        if self.max_save_attempts == 0 {
            return fail("at least one save attempt is needed");
        }
        Ok(self.assemble())
    }

    fn assemble(self) -> SessionLayer {
        let ring = KeyRing::new(&self.key, &self.fallback_keys, &self.cookie.name);
        let lifetime = Lifetime {
            idle: self.idle,
            absolute: self.absolute,
            refresh_after: self.idle.mul_f64(self.refresh_after.clamp(0.0, 1.0)),
            persistent: self.persistent,
        };
        SessionLayer {
            shared: Arc::new(Shared {
                store: self.store,
                cookie: self.cookie,
                ring,
                lifetime,
                max_save_attempts: self.max_save_attempts,
                clock: self.clock,
                save_if: self.save_if,
                on_error: self.on_error,
            }),
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
            .field("fallback_keys", &self.fallback_keys.len())
            .finish_non_exhaustive()
    }
}

/// `500`, or `409` when the session changed under the request; a short
/// plain-text body that names no id.
fn default_error_response(error: &Error) -> Response<String> {
    let status = match error.kind() {
        ErrorKind::SessionGone | ErrorKind::Conflict => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = Response::new(format!("{error}\n"));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_is_throttled() {
        let lifetime = Lifetime {
            idle: Duration::from_secs(100),
            absolute: Duration::from_secs(1000),
            refresh_after: Duration::from_secs(25),
            persistent: false,
        };
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expires = created + Duration::from_secs(100);
        let at = |seconds| created + Duration::from_secs(seconds);
        assert!(!lifetime.refresh_due(created, expires, at(10)));
        assert!(!lifetime.refresh_due(created, expires, at(24)));
        assert!(lifetime.refresh_due(created, expires, at(25)));
        // Near the absolute deadline a refresh gains nothing.
        let late = created + Duration::from_secs(1000);
        assert!(!lifetime.refresh_due(created, late, at(990)));
    }

    #[test]
    fn the_absolute_clock_caps_the_deadline() {
        let lifetime = Lifetime {
            idle: Duration::from_secs(100),
            absolute: Duration::from_secs(150),
            refresh_after: Duration::ZERO,
            persistent: false,
        };
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            lifetime.deadline(created, created + Duration::from_secs(120)),
            created + Duration::from_secs(150)
        );
    }
}
