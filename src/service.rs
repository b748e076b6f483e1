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
