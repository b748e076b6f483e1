//! The basics through a real axum `Router`: the round trip, what a request
//! that does not use the session costs, the extractors and their rejections,
//! and the layer around a plain tower service.

use std::convert::Infallible;

use crate::support;
use crate::support::{App, Reply, key};
use axum::Router;
use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE, VARY};
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt as _;
use session_layer::{LazySession, MemoryStore, Session, SessionLayer};
use tower::ServiceExt as _;

#[tokio::test]
async fn round_trip_sets_the_cookie_once_with_secure_defaults() {
    let (app, store, memory) = support::counted();

    let first = app.post("/set/k/hello", None).await;
    assert_eq!(first.status, StatusCode::OK);
    let cookie = first
        .session_cookie()
        .expect("the new session sets its cookie");
    assert_eq!(cookie.name, "id");
    assert_eq!(
        cookie.value.len(),
        64,
        "base64url of a 16-byte id and a 32-byte tag"
    );
    assert!(
        cookie
            .value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'),
        "{}",
        cookie.value
    );
    assert_eq!(cookie.attribute("HttpOnly"), Some(None));
    assert_eq!(cookie.attribute("Secure"), Some(None));
    assert_eq!(cookie.value_of("SameSite"), Some("Lax"));
    assert_eq!(cookie.value_of("Path"), Some("/"));
    assert!(
        !cookie.has("Max-Age"),
        "a browser-session cookie by default: {cookie:?}"
    );
    assert!(!cookie.has("Expires"), "{cookie:?}");
    assert!(!cookie.has("Domain"), "{cookie:?}");
    assert_eq!(first.cache_control(), Some("no-store"));
    assert_eq!(first.vary(), Some("Cookie"));
    assert_eq!(
        store.snapshot(),
        [0, 1, 0, 0, 0],
        "one create, no load without a cookie"
    );
    assert_eq!(memory.len(), 1);

    let second = app.get("/get/k", Some(&cookie.value)).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body, "hello");
    assert!(second.headers.get(SET_COOKIE).is_none(), "{second:?}");
    assert_eq!(
        second.cache_control(),
        Some("no-store"),
        "a stored session was read: no copy in the browser's cache"
    );
    assert_eq!(
        second.vary(),
        Some("Cookie"),
        "the body depends on the session"
    );
    assert_eq!(
        store.snapshot(),
        [1, 1, 0, 0, 0],
        "one load, no write for a read"
    );
    assert_eq!(memory.len(), 1);
}

#[tokio::test]
async fn vary_cookie_is_merged_with_the_handlers_vary() {
    let (app, _store, _memory) = support::counted();
    let value = app.start_session().await;

    let reply = app.get("/vary", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "v");
    let vary: Vec<_> = reply.headers.get_all(VARY).iter().collect();
    assert_eq!(vary, ["Accept-Encoding, Cookie"]);

    // Anonymous: the body still depends on the (absent) cookie.
    let reply = app.get("/vary", None).await;
    let vary: Vec<_> = reply.headers.get_all(VARY).iter().collect();
    assert_eq!(vary, ["Accept-Encoding, Cookie"]);
    assert!(reply.headers.get(SET_COOKIE).is_none());
}

#[tokio::test]
async fn a_route_that_never_extracts_the_session_costs_nothing() {
    let (app, store, memory) = support::counted();
    let value = app.start_session().await;
    let before = store.snapshot();

    for cookie in [Some(value.as_str()), None, Some("forged")] {
        let reply = app.get("/plain", cookie).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "plain");
        assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
        assert!(reply.headers.get(VARY).is_none(), "{reply:?}");
        assert!(reply.headers.get(CACHE_CONTROL).is_none(), "{reply:?}");

        // Taking the `LazySession` without loading it is free too.
        let reply = app.get("/lazy", cookie).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
        assert!(reply.headers.get(VARY).is_none(), "{reply:?}");
    }
    assert_eq!(store.snapshot(), before, "no store call at all");
    assert_eq!(memory.len(), 1);
}

#[tokio::test]
async fn anonymous_readers_create_nothing() {
    let (app, store, memory) = support::counted();

    for uri in ["/get/k", "/n", "/id", "/maybe", "/typed"] {
        let reply = app.get(uri, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.body);
        assert!(reply.headers.get(SET_COOKIE).is_none(), "{uri}: {reply:?}");
        assert_eq!(reply.vary(), Some("Cookie"), "{uri}");
    }
    assert_eq!(app.get("/id", None).await.body, "none");
    // Writes that cancel out, and calls that change nothing, are not writes.
    for uri in [
        "/remove/k",
        "/take/k",
        "/clear",
        "/cycle",
        "/destroy",
        "/persist/false",
    ] {
        let reply = app.post(uri, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.body);
        assert!(reply.headers.get(SET_COOKIE).is_none(), "{uri}: {reply:?}");
    }
    assert_eq!(store.total(), 0, "{:?}", store.snapshot());
    assert_eq!(memory.len(), 0);
}

#[tokio::test]
async fn extracting_twice_loads_once_and_shares_the_handle() {
    let (app, store, _memory) = support::counted();
    let value = app.start_session().await;
    let loads = store.loads();

    let reply = app.post("/twice", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "from the first handle");
    assert_eq!(store.loads(), loads + 1);
    assert_eq!(
        app.get("/get/k", Some(&value)).await.body,
        "from the first handle"
    );
}

#[tokio::test]
async fn remove_take_clear_and_update_are_saved() {
    let (app, _store, memory) = support::counted();
    let value = app.start_session().await;
    assert_eq!(
        app.post("/set/other/x", Some(&value)).await.status,
        StatusCode::OK
    );

    assert_eq!(app.post("/remove/other", Some(&value)).await.body, "true");
    assert_eq!(app.get("/get/other", Some(&value)).await.body, "<none>");

    assert_eq!(app.post("/take/k", Some(&value)).await.body, "v");
    assert_eq!(app.post("/take/k", Some(&value)).await.body, "<none>");

    for expected in ["1", "2", "3"] {
        let reply = app.post("/incr", Some(&value)).await;
        assert_eq!(reply.body, expected);
        assert!(
            reply.headers.get(SET_COOKIE).is_none(),
            "the id did not change"
        );
    }
    assert_eq!(app.get("/n", Some(&value)).await.body, "3");

    assert_eq!(
        app.post("/clear", Some(&value)).await.status,
        StatusCode::OK
    );
    assert_eq!(app.get("/n", Some(&value)).await.body, "0");
    // `clear` keeps the session and its id.
    assert_eq!(
        app.get("/id", Some(&value)).await.body,
        support::id_of(&value).expose()
    );
    assert_eq!(memory.len(), 1);
}

#[tokio::test]
async fn a_handlers_own_session_cookie_is_replaced() {
    let (app, _store, _memory) = support::counted();
    let reply = app.post("/own-cookie", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    // `session_cookie` asserts there is only one.
    let cookie = reply
        .session_cookie()
        .expect("the layer sets the session cookie");
    assert_ne!(cookie.value, "from-the-handler");
    assert_eq!(cookie.value.len(), 64);
    let others: Vec<_> = reply
        .set_cookies()
        .into_iter()
        .filter(|cookie| cookie.name != "id")
        .map(|cookie| cookie.value)
        .collect();
    assert_eq!(others, ["dark"], "other cookies are left alone");
}

#[tokio::test]
async fn the_extractor_without_the_layer_names_the_missing_layer() {
    let app = App::with_router(support::routes(), "id");
    for uri in ["/get/k", "/maybe", "/lazy"] {
        let reply = app.get(uri, None).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        assert!(reply.body.contains("SessionLayer"), "{uri}: {}", reply.body);
        assert!(reply.headers.get(SET_COOKIE).is_none());
    }
}

#[tokio::test]
async fn optional_session_is_none_for_anonymous_visitors() {
    let (app, store, memory) = support::counted();

    let reply = app.get("/maybe", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "none");
    assert!(reply.headers.get(SET_COOKIE).is_none());
    assert_eq!(store.total(), 0);
    assert_eq!(memory.len(), 0);

    let value = app.start_session().await;
    let reply = app.get("/maybe", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "some:v");
    assert!(reply.headers.get(SET_COOKIE).is_none());

    // A signed cookie whose session is gone is anonymous too.
    assert_eq!(
        app.post("/destroy", Some(&value)).await.status,
        StatusCode::OK
    );
    assert_eq!(app.get("/maybe", Some(&value)).await.body, "none");
    assert_eq!(memory.len(), 0);
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_an_error_not_a_panic() {
    let (app, _store, _memory) = support::counted();
    let value = app.start_session().await; // k = "v", a string

    let reply = app.get("/typed", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body, "k is not a number");

    // `?` on the session error answers 500 with a message that holds no id.
    let reply = app.post("/incr", Some(&value)).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "n is absent, so update starts at 0"
    );
    assert_eq!(
        app.post("/set/n/text", Some(&value)).await.status,
        StatusCode::OK
    );
    let reply = app.get("/n", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.body.contains("deserialize"), "{}", reply.body);
    assert!(!reply.body.contains(&value), "{}", reply.body);
    assert!(
        !reply.body.contains(&support::id_of(&value).expose()),
        "{}",
        reply.body
    );
    // A failed `update` leaves the value in place.
    let reply = app.post("/incr", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.get("/get/n", Some(&value)).await.body, "text");
}

#[tokio::test]
async fn a_plain_tower_service_loads_the_session_from_the_extensions() {
    let memory = MemoryStore::default();
    let layer = SessionLayer::new(memory.clone(), key(1));
    let service = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(|request: Request<Body>| async move {
            let lazy = request
                .extensions()
                .get::<LazySession>()
                .expect("the layer puts a LazySession in the extensions");
            let session = lazy.load().await.expect("the memory store does not fail");
            let seen = session.get::<u32>("seen").expect("a number").unwrap_or(0);
            session.insert("seen", seen + 1).expect("serializable");
            Ok::<_, Infallible>(Response::new(Body::from(format!("seen {seen}"))))
        }));

    let response = service
        .clone()
        .oneshot(Request::new(Body::empty()))
        .await
        .expect("infallible");
    // The layer's body wraps the service's; axum's `Body` takes any body.
    let first = Reply::read(response.map(Body::new), "id").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body, "seen 0");
    let value = first.session_value().expect("the cookie is set");
    assert_eq!(first.cache_control(), Some("no-store"));
    assert_eq!(memory.len(), 1);

    let request = Request::builder()
        .header(COOKIE, format!("id={value}"))
        .body(Body::empty())
        .expect("a valid request");
    let response = service.oneshot(request).await.expect("infallible");
    let second = Reply::read(response.map(Body::new), "id").await;
    assert_eq!(second.body, "seen 1");
    assert!(second.session_cookie().is_none());
    assert_eq!(memory.len(), 1);
}

#[tokio::test]
async fn a_service_with_a_string_body_works_too() {
    let layer = SessionLayer::new(MemoryStore::default(), key(1));
    let service = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(|request: Request<()>| async move {
            let lazy = request.extensions().get::<LazySession>().cloned();
            let session = lazy.expect("installed").load().await.expect("loads");
            session.insert("k", "v").expect("serializable");
            Ok::<_, Infallible>(Response::new(String::from("ok")))
        }));
    let response = service.oneshot(Request::new(())).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let cookies: Vec<_> = response.headers().get_all(SET_COOKIE).iter().collect();
    assert_eq!(cookies.len(), 1);
    let body = response.into_body().collect().await.expect("a string body");
    assert_eq!(body.to_bytes(), "ok");
}

#[tokio::test]
async fn nested_routers_share_one_session() {
    let memory = MemoryStore::default();
    let api = Router::new().route(
        "/who",
        get(|session: Session| async move {
            session
                .get::<String>("k")
                .ok()
                .flatten()
                .unwrap_or_default()
        }),
    );
    let router = support::routes()
        .nest("/api", api)
        .layer(SessionLayer::new(memory.clone(), key(1)));
    let app = App::with_router(router, "id");
    let value = app.start_session().await;
    let reply = app.get("/api/who", Some(&value)).await;
    assert_eq!(reply.body, "v");
    assert_eq!(memory.len(), 1);
}

/// A service that is not `Clone` and refuses a call it was not readied for.
struct ReadiedOnce {
    ready: bool,
    calls: usize,
}

impl tower::Service<Request<Body>> for ReadiedOnce {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.ready = true;
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<Body>) -> Self::Future {
        assert!(std::mem::take(&mut self.ready), "called without poll_ready");
        self.calls += 1;
        std::future::ready(Ok(Response::new(Body::from("ok"))))
    }
}

#[tokio::test]
async fn the_inner_service_need_not_be_clone_and_is_called_once_readied() {
    use tower::{Layer as _, Service as _};
    let layer = SessionLayer::new(MemoryStore::default(), key(1));
    let mut service = layer.layer(ReadiedOnce {
        ready: false,
        calls: 0,
    });
    for _ in 0..2 {
        let response = service
            .ready()
            .await
            .expect("infallible")
            .call(Request::new(Body::empty()))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(service.get_ref().calls, 2);
}
