//! The axum extractors and their rejection (feature `axum`).

use std::fmt;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::error::Error;
use crate::load::LazySession;
use crate::session::Session;

/// Why the [`Session`] extractor failed.
///
/// Both cases answer `500 Internal Server Error` with a plain-text message;
/// match on it in a handler (`Result<Session, SessionRejection>`) to answer
/// differently.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionRejection {
    /// The request did not pass through a [`SessionLayer`](crate::SessionLayer).
    MissingLayer,
    /// The store failed to load the session, or its record is corrupt. The
    /// browser's cookie is left alone.
    Load(Error),
}

impl fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingLayer => f.write_str(
                "no session layer: add `.layer(SessionLayer::new(store, key))` to the router \
                 that serves this route",
            ),
            Self::Load(error) => write!(f, "failed to load the session: {error}"),
        }
    }
}

impl std::error::Error for SessionRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::MissingLayer => None,
            Self::Load(error) => Some(error),
        }
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

fn lazy(parts: &Parts) -> Result<&LazySession, SessionRejection> {
    parts
        .extensions
        .get::<LazySession>()
        .ok_or(SessionRejection::MissingLayer)
}

/// Loads the session (once per request, however often it is extracted).
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        lazy(parts)?.load().await.map_err(SessionRejection::Load)
    }
}

/// `Option<Session>` is `Some` only if the request belongs to an existing,
/// stored session; an anonymous visitor gets `None`, so the handler cannot
/// create a session by accident. It still rejects if the layer is missing or
/// the store fails.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let session = lazy(parts)?.load().await.map_err(SessionRejection::Load)?;
        Ok(session.id().is_some().then_some(session))
    }
}

/// The session without loading it: for handlers that load it only on some
/// paths, and pay no store call on the others.
impl<S: Send + Sync> FromRequestParts<S> for LazySession {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        lazy(parts).cloned()
    }
}

/// Lets handlers return `Result<_, session_layer::Error>` and use `?` on
/// session calls. The status is [`Error::status`], the same the layer
/// answers a failed save with; the body is the error's `Display`, which never
/// holds an id or a key.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        (self.status(), self.to_string()).into_response()
    }
}
