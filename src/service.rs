//! `SessionService`: the middleware around an inner service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::config::Config;
use crate::future::ResponseFuture;
use crate::load::LazySession;

/// The middleware built by [`SessionLayer`](crate::SessionLayer).
///
/// Each request gets a [`LazySession`] in its extensions; the response is
/// completed by [`ResponseFuture`], which saves the session and sets the
/// cookie. Its body is the inner service's, wrapped in a [`ResponseBody`]
/// that can also carry the save-error response.
#[derive(Clone)]
#[must_use]
pub struct SessionService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> SessionService<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// Returns a reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Returns a mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Returns the inner service, consuming the middleware.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let session = LazySession::new(Arc::clone(&self.config), request.headers());
        request.extensions_mut().insert(session.clone());
        // The inner service is called here, before `call` returns, so the
        // service that `poll_ready` readied is the one called: no clone of it
        // is needed (the clone-and-swap idiom is for middleware that calls
        // the inner service later, from its future).
        ResponseFuture::new(self.inner.call(request), session)
    }
}

impl<S: fmt::Debug> fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "memory-store", feature = "axum"))]
mod tests {
    use async_trait::async_trait;
    use axum::body::Body;
    use axum::response::{Html, IntoResponse as _};
    use axum::{Router, routing::get};
    use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, SET_COOKIE};
    use http::{Request, StatusCode};
    use http_body_util::BodyExt as _;
    use tower::{ServiceBuilder, ServiceExt as _};
    use tower_http::compression::CompressionLayer;

    use crate::store::{Created, Record, Rotated, SessionStore, Updated};
    use crate::{Error, Id, Key, MemoryStore, Session, SessionLayer};

    /// A store that refuses every new session: each save fails.
    struct Refusing;

    #[async_trait]
    impl SessionStore for Refusing {
        async fn load(&self, _: &Id) -> Result<Option<Record>, Error> {
            Ok(None)
        }
        async fn create(&self, _: &Record) -> Result<Created, Error> {
            Err(Error::store(std::io::Error::other("refused")))
        }
        async fn update(&self, _: &Record, _: u64) -> Result<Updated, Error> {
            Ok(Updated::Stale)
        }
        async fn delete(&self, _: &Id) -> Result<(), Error> {
            Ok(())
        }
        async fn rotate(
            &self,
            _: &Id,
            _: u64,
            _: &Record,
            _: Option<&Record>,
        ) -> Result<Rotated, Error> {
            Ok(Rotated::Stale)
        }
    }

    fn app() -> Router {
        async fn page(session: Session) -> Result<String, Error> {
            session.insert("seen", true)?;
            Ok("a page that compresses well; ".repeat(100))
        }
        Router::new().route("/", get(page))
    }

    fn gzip_request() -> Request<Body> {
        Request::builder()
            .header(ACCEPT_ENCODING, "gzip")
            .body(Body::empty())
            .expect("a valid request")
    }

    #[tokio::test]
    async fn wraps_compression_whose_body_is_not_from_a_string() {
        let key = Key::generate().expect("os rng");
        let service = ServiceBuilder::new()
            .layer(SessionLayer::new(MemoryStore::default(), key))
            .layer(CompressionLayer::new())
            .service(app());
        let response = service.oneshot(gzip_request()).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_ENCODING], "gzip");
        assert!(response.headers().contains_key(SET_COOKIE));
        let body = response.into_body().collect().await.expect("gzip");
        assert!(body.to_bytes().len() < 3000, "the page was compressed");
    }

    #[tokio::test]
    async fn a_failed_save_replaces_a_compressed_body_with_the_hook_response() {
        let key = Key::generate().expect("os rng");
        let layer = SessionLayer::builder(Refusing, key)
            .on_save_error(|error: &Error| {
                (error.status(), Html("<p>Please try again.</p>")).into_response()
            })
            .build()
            .expect("valid");
        let service = ServiceBuilder::new()
            .layer(layer)
            .layer(CompressionLayer::new())
            .service(app());
        let response = service.oneshot(gzip_request()).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!response.headers().contains_key(SET_COOKIE));
        assert!(!response.headers().contains_key(CONTENT_ENCODING));
        let body = response.into_body().collect().await.expect("html");
        assert_eq!(&body.to_bytes()[..], b"<p>Please try again.</p>");
    }
}
