//! The response future: waits for the inner service, then saves the session
//! and writes the cookie headers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;
use crate::config::Config;
use crate::error::Error;
use crate::load::LazySession;
use crate::save::{self, Decision};
use crate::session_cookie::{self, SessionHeaders};
use crate::trace::{event, in_span};

/// The store writes of one response; an `async fn`'s future has no name.
type Saving = Pin<Box<dyn Future<Output = Result<SessionHeaders, Error>> + Send>>;

pin_project! {
    /// The response future of [`SessionService`](crate::SessionService).
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        /// The inner service is still working.
        Inner {
            #[pin]
            future: F,
            session: LazySession,
        },
        /// The session is being saved; the response waits.
        Saving {
            saving: Saving,
            response: Option<Response<B>>,
            config: Arc<Config>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(future: F, session: LazySession) -> Self {
        Self {
            state: State::Inner { future, session },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { future, session } => {
                    let response = ready!(future.poll(cx))?;
                    let config = session.config();
                    let save = match save::decide(session, response.status()) {
                        Ok(Decision::Untouched) => return Poll::Ready(Ok(pass(response))),
                        Ok(Decision::Headers(headers)) => {
                            return Poll::Ready(Ok(with_headers(config, response, &headers)));
                        }
                        Ok(Decision::Save(save)) => save,
                        Err(error) => return Poll::Ready(Ok(replace(config, &error))),
                    };
                    let config = Arc::clone(config);
                    let saving = Box::pin(in_span!("session.save", save.run(Arc::clone(&config))));
                    this.state.set(State::Saving {
                        saving,
                        response: Some(response),
                        config,
                    });
                }
                StateProj::Saving {
                    saving,
                    response,
                    config,
                } => {
                    let outcome = ready!(saving.as_mut().poll(cx));
                    let response = response
                        .take()
                        .expect("`ResponseFuture` polled after completion");
                    return Poll::Ready(Ok(match outcome {
                        Ok(headers) => with_headers(config, response, &headers),
                        Err(error) => replace(config, &error),
                    }));
                }
            }
        }
    }
}

/// The handler's response, untouched.
fn pass<B>(response: Response<B>) -> Response<ResponseBody<B>> {
    response.map(ResponseBody::inner)
}

/// The handler's response with the session headers.
fn with_headers<B>(
    config: &Config,
    mut response: Response<B>,
    headers: &SessionHeaders,
) -> Response<ResponseBody<B>> {
    session_cookie::write_headers(
        response.headers_mut(),
        &config.cookie,
        config.headers,
        headers,
    );
    pass(response)
}

/// The save-error response that replaces the handler's.
fn replace<B>(config: &Config, error: &Error) -> Response<ResponseBody<B>> {
    event!(error, error = %crate::trace::Chain(error), "failed to save the session");
    let mut response = config.error_response(error).map(ResponseBody::replaced);
    session_cookie::write_error_headers(response.headers_mut(), &config.cookie);
    response
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
