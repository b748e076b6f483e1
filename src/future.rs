//! The response future: waits for the inner service, then saves the session
//! and writes the cookie headers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::commit::{self, Commit, Finish};
use crate::session::LazySession;

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
            commit: Commit,
            response: Option<Response<B>>,
            session: LazySession,
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
    B: From<String>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { future, session } => {
                    let mut response = ready!(future.poll(cx))?;
                    match commit::finish(session, response.status()) {
                        Finish::Untouched => return Poll::Ready(Ok(response)),
                        Finish::Ready(cookie) => {
                            commit::write_headers(session, &mut response, cookie.as_ref());
                            return Poll::Ready(Ok(response));
                        }
                        Finish::Save(commit) => {
                            let session = session.clone();
                            this.state.set(State::Saving {
                                commit,
                                response: Some(response),
                                session,
                            });
                        }
                    }
                }
                StateProj::Saving {
                    commit,
                    response,
                    session,
                } => {
                    let outcome = ready!(commit.as_mut().poll(cx));
                    let response = response
                        .take()
                        .expect("`ResponseFuture` polled after completion");
                    return Poll::Ready(Ok(commit::respond(session, response, outcome)));
                }
            }
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
