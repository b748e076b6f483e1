//! The application under test: the routes, a client that sends requests
//! through `oneshot` (or from a task of its own), and the parsed response.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE, VARY};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt as _;
use session_layer::{Error, ErrorKind, LazySession, MemoryStore, Session, SessionLayer};
use tokio::task::JoinHandle;

use super::{CountingStore, FaultyStore, Gate, Op, key};
use tower::ServiceExt as _;

type Result<T, E = Error> = std::result::Result<T, E>;

async fn plain() -> &'static str {
    "plain"
}

async fn read(session: Session, Path(key): Path<String>) -> Result<String> {
    Ok(session
        .get::<String>(&key)?
        .unwrap_or_else(|| "<none>".to_owned()))
}

async fn write(
    session: Session,
    Path((key, value)): Path<(String, String)>,
) -> Result<&'static str> {
    session.insert(&key, value)?;
    Ok("ok")
}

async fn remove(session: Session, Path(key): Path<String>) -> String {
    session.remove(&key).to_string()
}

async fn take(session: Session, Path(key): Path<String>) -> Result<String> {
    Ok(session
        .take::<String>(&key)?
        .unwrap_or_else(|| "<none>".to_owned()))
}

async fn counter(session: Session) -> Result<String> {
    Ok(session.get::<u64>("n")?.unwrap_or(0).to_string())
}

async fn increment(session: Session) -> Result<String> {
    let n = session.update("n", |n: Option<u64>| n.unwrap_or(0) + 1)?;
    Ok(n.to_string())
}

async fn clear(session: Session) -> &'static str {
    session.clear();
    "cleared"
}

async fn cycle(session: Session) -> &'static str {
    session.cycle_id();
    "cycled"
}

async fn destroy(session: Session) -> &'static str {
    session.destroy();
    "destroyed"
}

async fn sign_out(session: Session) -> Result<&'static str> {
    session.destroy();
    session.insert("flash", "signed out")?;
    Ok("signed out")
}

async fn persist(session: Session, Path(persistent): Path<bool>) -> &'static str {
    session.set_persistent(persistent);
    "ok"
}

async fn id(session: Session) -> String {
    session
        .id()
        .map_or_else(|| "none".to_owned(), |id| id.expose())
}

async fn vary(session: Session) -> Result<impl IntoResponse> {
    let value = session.get::<String>("k")?.unwrap_or_default();
    Ok(([(VARY, "Accept-Encoding")], value))
}

async fn fail(session: Session, Path((key, value)): Path<(String, String)>) -> Result<Response> {
    session.insert(&key, value)?;
    Ok((StatusCode::INTERNAL_SERVER_ERROR, "handler failed").into_response())
}

async fn destroy_then_fail(session: Session) -> Response {
    session.destroy();
    (StatusCode::SERVICE_UNAVAILABLE, "handler failed").into_response()
}

async fn maybe(session: Option<Session>) -> String {
    match session {
        Some(session) => format!(
            "some:{}",
            session
                .get::<String>("k")
                .ok()
                .flatten()
                .unwrap_or_default()
        ),
        None => "none".to_owned(),
    }
}

async fn typed(session: Session) -> Response {
    match session.get::<u64>("k") {
        Ok(value) => format!("{value:?}").into_response(),
        Err(error) if error.kind() == ErrorKind::Deserialize => {
            (StatusCode::BAD_REQUEST, "k is not a number").into_response()
        }
        Err(error) => error.into_response(),
    }
}

async fn twice(first: Session, second: Session) -> Result<String> {
    first.insert("k", "from the first handle")?;
    Ok(second.get::<String>("k")?.unwrap_or_default())
}

async fn lazy(_session: LazySession) -> &'static str {
    "lazy"
}

async fn own_cookie(session: Session) -> Result<Response> {
    session.insert("k", "v")?;
    Ok((
        [
            (SET_COOKIE, "id=from-the-handler; Path=/"),
            (SET_COOKIE, "theme=dark; Path=/"),
        ],
        "ok",
    )
        .into_response())
}

/// Returns the routes every test app serves, without the layer.
///
/// | route | what the handler does |
/// |---|---|
/// | `GET /plain` | never touches the session |
/// | `GET /lazy` | extracts `LazySession` but never loads it |
/// | `GET /get/{key}` | reads a string, `<none>` if absent |
/// | `POST /set/{key}/{value}` | inserts a string |
/// | `POST /remove/{key}`, `POST /take/{key}` | remove / take a string |
/// | `GET /n`, `POST /incr` | read / `update` the counter `n` |
/// | `POST /clear`, `/cycle`, `/destroy`, `/sign-out` | the session calls |
/// | `POST /persist/{bool}` | `set_persistent` |
/// | `GET /id` | the session id, `none` if not stored |
/// | `GET /vary` | reads `k`, answers with `Vary: Accept-Encoding` |
/// | `POST /fail/{key}/{value}` | inserts, then answers 500 |
/// | `POST /destroy-fail` | destroys, then answers 503 |
/// | `GET /maybe` | `Option<Session>` |
/// | `GET /typed` | reads `k` as a `u64`, 400 if it is not one |
/// | `POST /twice` | two `Session` extractors in one handler |
/// | `POST /own-cookie` | inserts and sets its own `id` cookie |
pub(crate) fn routes() -> Router {
    Router::new()
        .route("/plain", get(plain))
        .route("/lazy", get(lazy))
        .route("/get/{key}", get(read))
        .route("/set/{key}/{value}", post(write))
        .route("/remove/{key}", post(remove))
        .route("/take/{key}", post(take))
        .route("/n", get(counter))
        .route("/incr", post(increment))
        .route("/clear", post(clear))
        .route("/cycle", post(cycle))
        .route("/destroy", post(destroy))
        .route("/sign-out", post(sign_out))
        .route("/persist/{persistent}", post(persist))
        .route("/id", get(id))
        .route("/vary", get(vary))
        .route("/fail/{key}/{value}", post(fail))
        .route("/destroy-fail", post(destroy_then_fail))
        .route("/maybe", get(maybe))
        .route("/typed", get(typed))
        .route("/twice", post(twice))
        .route("/own-cookie", post(own_cookie))
}

/// A router behind a session layer, and the cookie name that layer uses.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) router: Router,
    pub(crate) cookie_name: String,
}

impl App {
    /// Serves [`routes`] behind `layer`, whose cookie is called `id`.
    pub(crate) fn new(layer: SessionLayer) -> Self {
        Self::named(layer, "id")
    }

    /// Serves [`routes`] behind `layer`, whose cookie is called `cookie_name`.
    pub(crate) fn named(layer: SessionLayer, cookie_name: &str) -> Self {
        Self::with_router(routes().layer(layer), cookie_name)
    }

    /// Wraps any router already behind a session layer.
    pub(crate) fn with_router(router: Router, cookie_name: &str) -> Self {
        Self {
            router,
            cookie_name: cookie_name.to_owned(),
        }
    }

    /// Sends `GET uri`, with the session cookie set to `cookie` if given.
    pub(crate) async fn get(&self, uri: &str, cookie: Option<&str>) -> Reply {
        self.send(Method::GET, uri, cookie).await
    }

    /// Sends `POST uri`, with the session cookie set to `cookie` if given.
    pub(crate) async fn post(&self, uri: &str, cookie: Option<&str>) -> Reply {
        self.send(Method::POST, uri, cookie).await
    }

    pub(crate) async fn send(&self, method: Method, uri: &str, cookie: Option<&str>) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(value) = cookie {
            request = request.header(COOKIE, format!("{}={value}", self.cookie_name));
        }
        self.call(request.body(Body::empty()).expect("a valid request"))
            .await
    }

    /// Sends `GET uri` with these raw `Cookie` header lines.
    pub(crate) async fn get_with_cookie_lines(&self, uri: &str, lines: Vec<HeaderValue>) -> Reply {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .body(Body::empty())
            .expect("a valid request");
        for line in lines {
            request.headers_mut().append(COOKIE, line);
        }
        self.call(request).await
    }

    /// Sends a prepared request.
    pub(crate) async fn call(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("a router never fails");
        Reply::read(response, &self.cookie_name).await
    }

    /// Creates a session holding `k = v` and returns its cookie value.
    pub(crate) async fn start_session(&self) -> String {
        let reply = self.post("/set/k/v", None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply
            .session_value()
            .expect("a new session sets its cookie")
    }
}

/// An app on a [`CountingStore`] around a [`MemoryStore`], the counter and
/// the memory store.
pub(crate) fn counted() -> (App, CountingStore<MemoryStore>, MemoryStore) {
    let memory = MemoryStore::default();
    let store = CountingStore::new(memory.clone());
    let app = App::new(SessionLayer::new(store.clone(), key(1)));
    (app, store, memory)
}

/// An app on a [`FaultyStore`] around a [`MemoryStore`], the faulty store
/// and the memory store.
pub(crate) fn faulty() -> (App, FaultyStore<MemoryStore>, MemoryStore) {
    let memory = MemoryStore::default();
    let store = FaultyStore::new(memory.clone());
    let app = App::new(SessionLayer::new(store.clone(), key(1)));
    (app, store, memory)
}

/// Sends `POST uri` with `cookie` from a task of its own, so the test can act
/// while the request is in flight.
pub(crate) fn spawn_post(app: &App, uri: &str, cookie: &str) -> JoinHandle<Reply> {
    let (app, uri, cookie) = (app.clone(), uri.to_owned(), cookie.to_owned());
    tokio::spawn(async move { app.post(&uri, Some(&cookie)).await })
}

/// Sends `GET uri` with `cookie` from a task of its own.
pub(crate) fn spawn_get(app: &App, uri: &str, cookie: &str) -> JoinHandle<Reply> {
    let (app, uri, cookie) = (app.clone(), uri.to_owned(), cookie.to_owned());
    tokio::spawn(async move { app.get(&uri, Some(&cookie)).await })
}

/// Waits for a request sent by [`spawn_post`] or [`spawn_get`]; fails the
/// test if it takes more than 10 s or its task panicked.
pub(crate) async fn join(task: JoinHandle<Reply>) -> Reply {
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the request finished within 10 s")
        .expect("the request task did not panic")
}

/// Like [`join`], for a request that must not wait on anything: fails the
/// test if it takes more than 5 s (a deadlock).
pub(crate) async fn join_within_5s(task: JoinHandle<Reply>) -> Reply {
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the request finished within 5 s (no deadlock)")
        .expect("the request task did not panic")
}

/// Waits until `task` (a request sent by [`spawn_post`] or [`spawn_get`])
/// pauses at `gate`, runs `meanwhile`, then opens the gate and returns what
/// `meanwhile` gave and the paused request's reply (within 5 s).
pub(crate) async fn while_paused_with<T>(
    gate: &Gate,
    task: JoinHandle<Reply>,
    meanwhile: impl Future<Output = T>,
) -> (T, Reply) {
    gate.reached().await;
    let outcome = meanwhile.await;
    gate.open();
    (outcome, join_within_5s(task).await)
}

/// [`while_paused_with`] for a `meanwhile` that gives nothing back.
pub(crate) async fn while_paused(
    gate: &Gate,
    task: JoinHandle<Reply>,
    meanwhile: impl Future<Output = ()>,
) -> Reply {
    while_paused_with(gate, task, meanwhile).await.1
}

/// Sends `POST uri` with `cookie` and checks that it answers 200.
pub(crate) async fn post_ok(app: &App, uri: &str, cookie: &str) {
    assert_eq!(
        app.post(uri, Some(cookie)).await.status,
        StatusCode::OK,
        "{uri}"
    );
}

/// Sends `POST /set/k/late` and holds its write in `faulty` while the same
/// session logs out (which must answer 200); returns the write's reply.
pub(crate) async fn logout_during_a_held_write<St>(
    app: &App,
    faulty: &FaultyStore<St>,
    cookie: &str,
) -> Reply {
    let at_update = faulty.hold_next(Op::Update);
    let writing = spawn_post(app, "/set/k/late", cookie);
    while_paused(&at_update, writing, post_ok(app, "/destroy", cookie)).await
}

/// A whole response: status, headers and the body as text.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
    cookie_name: String,
}

impl Reply {
    pub(crate) async fn read(response: Response, cookie_name: &str) -> Self {
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .expect("the body can be read")
            .to_bytes();
        Self {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(bytes.to_vec()).expect("the body is UTF-8"),
            cookie_name: cookie_name.to_owned(),
        }
    }

    /// Returns the single value of a header as text, if present.
    pub(crate) fn header(&self, name: impl axum::http::header::AsHeaderName) -> Option<&str> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("ASCII header"))
    }

    /// Returns every `Set-Cookie`, parsed.
    pub(crate) fn set_cookies(&self) -> Vec<SetCookie> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|value| SetCookie::parse(value.to_str().expect("ASCII Set-Cookie")))
            .collect()
    }

    /// Returns the `Set-Cookie` for the session cookie, checking that there
    /// is at most one: a response never sets the session cookie twice.
    pub(crate) fn session_cookie(&self) -> Option<SetCookie> {
        let mut cookies: Vec<SetCookie> = self
            .set_cookies()
            .into_iter()
            .filter(|cookie| cookie.name == self.cookie_name)
            .collect();
        assert!(
            cookies.len() <= 1,
            "more than one session Set-Cookie: {cookies:?}"
        );
        cookies.pop()
    }

    /// Returns the value of the session `Set-Cookie`, if one sets a cookie
    /// (a removal cookie does not count).
    pub(crate) fn session_value(&self) -> Option<String> {
        self.session_cookie()
            .filter(|cookie| !cookie.is_removal())
            .map(|cookie| cookie.value)
    }

    pub(crate) fn cache_control(&self) -> Option<&str> {
        self.header(CACHE_CONTROL)
    }

    pub(crate) fn vary(&self) -> Option<&str> {
        self.header(VARY)
    }
}

/// A parsed `Set-Cookie` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetCookie {
    pub(crate) name: String,
    pub(crate) value: String,
    /// The attributes in order, names as sent.
    pub(crate) attributes: Vec<(String, Option<String>)>,
}

impl SetCookie {
    pub(crate) fn parse(header: &str) -> Self {
        let mut parts = header.split(';').map(str::trim);
        let pair = parts.next().unwrap_or_default();
        let (name, value) = pair
            .split_once('=')
            .expect("a Set-Cookie starts with name=value");
        let attributes = parts
            .filter(|part| !part.is_empty())
            .map(|part| match part.split_once('=') {
                Some((name, value)) => (name.trim().to_owned(), Some(value.trim().to_owned())),
                None => (part.to_owned(), None),
            })
            .collect();
        Self {
            name: name.to_owned(),
            value: value.to_owned(),
            attributes,
        }
    }

    /// Returns the attribute named `name` (case-insensitive): `None` if it is
    /// absent, `Some(None)` for a flag, `Some(Some(value))` otherwise.
    pub(crate) fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes
            .iter()
            .find(|(attribute, _)| attribute.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_deref())
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    /// Returns the value of an attribute that has one.
    pub(crate) fn value_of(&self, name: &str) -> Option<&str> {
        self.attribute(name).flatten()
    }

    pub(crate) fn max_age(&self) -> Option<i64> {
        self.value_of("Max-Age")
            .map(|value| value.parse().expect("Max-Age is a number"))
    }

    pub(crate) fn is_removal(&self) -> bool {
        self.value.is_empty() && self.max_age() == Some(0)
    }
}
