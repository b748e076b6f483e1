//! [`SessionLayer`]: the `tower::Layer` that gives every request a session.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::config::{self, Config, SessionLayerBuilder};
use crate::error::Error;
use crate::key::Key;
use crate::service::SessionService;
use crate::store::SessionStore;

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
    config: Arc<Config>,
}

impl SessionLayer {
    /// The default idle timeout: 30 minutes without a request end a session.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = config::DEFAULT_IDLE_TIMEOUT;

    /// The default absolute timeout: 12 hours after creation a session ends,
    /// however active it is.
    pub const DEFAULT_ABSOLUTE_TIMEOUT: Duration = config::DEFAULT_ABSOLUTE_TIMEOUT;

    /// The default rotation grace period: for 10 seconds after a rotation,
    /// the old id still answers requests that were already in flight.
    pub const DEFAULT_ROTATION_GRACE: Duration = config::DEFAULT_ROTATION_GRACE;

    /// The longest timeout accepted: browsers cap a cookie's lifetime at 400
    /// days.
    pub const MAX_TIMEOUT: Duration = config::MAX_TIMEOUT;

    /// The default number of times a save is tried against concurrent
    /// writers.
    pub const DEFAULT_MAX_SAVE_ATTEMPTS: usize = config::DEFAULT_MAX_SAVE_ATTEMPTS;

    /// The default cookie name, `id`: a generic name that does not reveal the
    /// framework (OWASP's advice).
    pub const DEFAULT_COOKIE_NAME: &'static str = crate::session_cookie::DEFAULT_NAME;

    /// Creates a layer with the default configuration: a cookie named `id`,
    /// `HttpOnly`, `Secure`, `SameSite=Lax`, `Path=/`, lasting for the
    /// browser session; a 30-minute idle and a 12-hour absolute timeout.
    pub fn new(store: impl SessionStore, key: Key) -> Self {
        Self::from_config(SessionLayerBuilder::new(Arc::new(store), key).assemble())
    }

    /// Starts a configuration from the defaults of [`SessionLayer::new`].
    pub fn builder(store: impl SessionStore, key: Key) -> SessionLayerBuilder {
        SessionLayerBuilder::new(Arc::new(store), key)
    }

    fn from_config(config: Config) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
}

impl SessionLayerBuilder {
    /// Checks the configuration and returns the layer.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Config`](crate::ErrorKind::Config) on an
    /// invalid cookie attribute, a broken prefix rule (`__Host-`,
    /// `__Secure-`), `SameSite=None` without `Secure`, a zero or over-long
    /// timeout, a refresh that does not fall due before the idle timeout,
    /// zero save attempts, or a rotation grace period over a minute.
    pub fn build(self) -> Result<SessionLayer, Error> {
        self.validate().map(SessionLayer::from_config)
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::new(inner, Arc::clone(&self.config))
    }
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("cookie", &self.config.cookie)
            .field("lifetime", &self.config.lifetime)
            .finish_non_exhaustive()
    }
}
