//! The response body of [`SessionService`](crate::SessionService): the inner
//! service's body as it is, or the body of the response that replaces the
//! handler's when saving the session fails.
//!
//! Building that replacement needs no help from the inner body type (no
//! `From<String>`, no `Default`), so the layer wraps any service, including
//! tower-http middleware with bodies of their own such as compression.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use pin_project_lite::pin_project;

/// The error type of [`ResponseBody`]: whatever the inner body failed with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a replacement response, whatever the hook built it from.
pub(crate) type ErrorBody = UnsyncBoxBody<Bytes, BoxError>;

/// Boxes any body into an [`ErrorBody`].
pub(crate) fn boxed<B>(body: B) -> ErrorBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

pin_project! {
    /// The body of a response from [`SessionService`](crate::SessionService).
    ///
    /// It is the inner service's body, unchanged, unless saving the session
    /// failed and the response was replaced by the save-error response
    /// ([`SessionLayerBuilder::on_save_error`](crate::SessionLayerBuilder::on_save_error)).
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner {
            #[pin]
            body: B,
        },
        Replaced {
            #[pin]
            body: ErrorBody,
        },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn replaced(body: ErrorBody) -> Self {
        Self {
            kind: Kind::Replaced { body },
        }
    }
}

impl<B: Default> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::inner(B::default())
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Replaced { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Replaced { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Replaced { body } => body.size_hint(),
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Replaced { .. } => "replaced",
        };
        f.debug_tuple("ResponseBody").field(&kind).finish()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test]
    async fn both_kinds_forward_frames_and_size() {
        let inner = ResponseBody::inner(String::from("handler"));
        assert_eq!(inner.size_hint().exact(), Some(7));
        let bytes = inner.collect().await.expect("a string body").to_bytes();
        assert_eq!(&bytes[..], b"handler");

        let replaced = ResponseBody::<String>::replaced(boxed(String::from("failed")));
        assert_eq!(replaced.size_hint().exact(), Some(6));
        assert_eq!(format!("{replaced:?}"), "ResponseBody(\"replaced\")");
        let bytes = replaced.collect().await.expect("a string body").to_bytes();
        assert_eq!(&bytes[..], b"failed");
    }
}
