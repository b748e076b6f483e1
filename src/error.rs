//! The crate's error type.

use std::error::Error as StdError;
use std::fmt;

use http::StatusCode;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// An error from the session layer, a session handle or a store.
///
/// It is opaque on purpose: match on [`Error::kind`], and follow
/// [`source`](StdError::source) for the cause. Neither `Display` nor `Debug`
/// ever prints a session id, a cookie value or a key.
pub struct Error {
    kind: ErrorKind,
    message: Option<&'static str>,
    source: Option<BoxError>,
}

/// The broad class of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The layer's configuration is invalid (found when it is built).
    Config,
    /// A key is too short to sign session cookies.
    Key,
    /// The session store failed: I/O, a lost connection, a backend error.
    Store,
    /// A store call did not finish within the store's configured timeout.
    Timeout,
    /// The store is full and refused to hold another session.
    Capacity,
    /// A value could not be serialized into the session.
    Serialize,
    /// A session value, or a whole stored record, could not be decoded.
    Deserialize,
    /// Concurrent writers kept winning until the layer gave up re-applying
    /// this request's changes.
    Conflict,
    /// The session was destroyed or rotated by a concurrent request before this
    /// request's changes could be saved; they were discarded.
    SessionGone,
    /// The operating system's random number generator failed, so no key or
    /// session id could be drawn.
    Random,
    /// The request presented a session id that a concurrent sign-in had just
    /// replaced (with [`Session::cycle_id`](crate::Session::cycle_id)), and
    /// tried to change or end the session through it. Nothing was saved and
    /// no cookie is sent: the browser already holds, or is about to
    /// receive, the new cookie, so trying again succeeds.
    IdRotated,
}

impl Error {
    /// Creates an error of `kind` caused by `source`.
    ///
    /// Store implementations use this with [`ErrorKind::Store`] to wrap their
    /// backend's error, so the layer can report it without losing the cause.
    pub fn new(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            message: None,
            source: Some(source.into()),
        }
    }

    /// Creates a store error caused by `source`.
    pub fn store(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::Store, source)
    }

    pub(crate) fn message(kind: ErrorKind, message: &'static str) -> Self {
        Self {
            kind,
            message: Some(message),
            source: None,
        }
    }

    /// Returns the class of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Returns the HTTP status that answers this error: `409 Conflict` when
    /// a concurrent request ended, moved or kept saving the session first
    /// ([`ErrorKind::SessionGone`], [`ErrorKind::IdRotated`],
    /// [`ErrorKind::Conflict`]), where trying again can succeed; `500 Internal Server Error` for every other kind.
    ///
    /// The layer's default save-error response and `IntoResponse` (feature
    /// `axum`) both answer with it.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::SessionGone | ErrorKind::Conflict | ErrorKind::IdRotated => {
                StatusCode::CONFLICT
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Config => "invalid session layer configuration",
            Self::Key => "invalid session key",
            Self::Store => "session store error",
            Self::Timeout => "session store call timed out",
            Self::Capacity => "session store is full",
            Self::Serialize => "failed to serialize a session value",
            Self::Deserialize => "failed to deserialize session data",
            Self::Conflict => "gave up saving the session after repeated concurrent updates",
            Self::SessionGone => {
                "the session ended in a concurrent request before it could be saved"
            }
            Self::Random => "the operating system's random number generator failed",
            Self::IdRotated => "the session moved to a new id in a concurrent sign-in",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.describe())?;
        if let Some(message) = self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Error");
        debug.field("kind", &self.kind);
        if let Some(message) = self.message {
            debug.field("message", &message);
        }
        if let Some(source) = &self.source {
            debug.field("source", source);
        }
        debug.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lower_case_and_keeps_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = Error::store(io);
        assert_eq!(error.kind(), ErrorKind::Store);
        assert_eq!(error.to_string(), "session store error");
        assert_eq!(
            error.source().map(ToString::to_string).as_deref(),
            Some("refused")
        );
    }

    #[test]
    fn one_status_per_kind() {
        let status = |kind| Error::message(kind, "x").status();
        assert_eq!(status(ErrorKind::Conflict), StatusCode::CONFLICT);
        assert_eq!(status(ErrorKind::SessionGone), StatusCode::CONFLICT);
        assert_eq!(status(ErrorKind::IdRotated), StatusCode::CONFLICT);
        for kind in [ErrorKind::Store, ErrorKind::Timeout, ErrorKind::Random] {
            assert_eq!(status(kind), StatusCode::INTERNAL_SERVER_ERROR, "{kind:?}");
        }
    }

    #[cfg(feature = "axum")]
    #[test]
    fn into_response_answers_the_same_status() {
        use axum_core::response::IntoResponse as _;
        for kind in [ErrorKind::Conflict, ErrorKind::Deserialize] {
            let error = Error::message(kind, "x");
            let status = error.status();
            assert_eq!(error.into_response().status(), status);
        }
    }

    #[test]
    fn message_follows_the_kind() {
        let error = Error::message(ErrorKind::Config, "`__Host-` cookies must be `Secure`");
        assert_eq!(
            error.to_string(),
            "invalid session layer configuration: `__Host-` cookies must be `Secure`"
        );
    }
}
