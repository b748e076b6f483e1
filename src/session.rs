//! The session handle: the data of one request's session, its pending
//! changes, and the lazy load that fills it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, header::COOKIE};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::codec::{self, Found};
use crate::data::Data;
use crate::error::{Error, ErrorKind};
use crate::id::Id;
use crate::key::Verified;
use crate::layer::Shared;
use crate::store::Record;
use crate::trace::{event, in_span};

/// The session of the current request.
///
/// Extract it in an axum handler (feature `axum`), or get it from the request
/// extensions through [`LazySession::load`]. Loading happens once per request,
/// however often the session is extracted; after that every call is
/// synchronous and touches no store. Changes are saved when the response
/// leaves the layer, only if something changed.
///
/// Clones share the same session.
///
/// ```
/// use axum::{Router, routing::get};
/// use session_layer::Session;
///
/// async fn visit(session: Session) -> Result<String, session_layer::Error> {
///     let visits = session.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1)?;
///     Ok(format!("visit number {visits}"))
/// }
///
/// let app: Router = Router::new().route("/", get(visit));
/// ```
#[derive(Clone)]
pub struct Session {
    state: Arc<Mutex<State>>,
}

/// `update`'s closure, erased so it can run again on newer data.
pub(crate) type Reapply = Box<dyn FnMut(Option<&Value>) -> Result<Value, Error> + Send>;

/// A change made through the handle, kept so it can be re-applied to a newer
/// version of the record if a concurrent request saved first.
pub(crate) enum Change {
    Insert(String, Value),
    Remove(String),
    Update(String, Reapply),
    Clear,
    Persistent(bool),
}

/// The stored record this request's session was loaded from.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) id: Id,
    pub(crate) version: u64,
    pub(crate) created_at: SystemTime,
    pub(crate) expires_at: SystemTime,
    /// The layer's clock when the record was loaded.
    pub(crate) loaded_at: SystemTime,
    /// The cookie lifetime as loaded.
    pub(crate) persistent: bool,
}

pub(crate) struct State {
    /// `None` for a new session, or after `destroy`.
    pub(crate) stored: Option<Stored>,
    pub(crate) data: Data,
    pub(crate) persistent: bool,
    pub(crate) changes: Vec<Change>,
    pub(crate) rotate: bool,
    /// A record that `destroy` asked to delete.
    pub(crate) destroyed: Option<Id>,
    /// The request came with a verified session cookie.
    pub(crate) presented: Option<Verified>,
    /// `destroy` was called: the browser's cookie must go.
    pub(crate) remove_cookie: bool,
    /// The layer's cookie lifetime for new sessions, restored by `destroy`.
    pub(crate) default_persistent: bool,
}

impl Session {
    fn new(state: State) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another holder cannot leave the state half-changed: every
        // change is applied in full before the guard drops.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns the value stored under `key`, or `None` if there is none.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Deserialize`] if the stored value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.lock().data.get(key)
    }

    /// Stores `value` under `key`, replacing any previous value.
    ///
    /// If a concurrent request saved the same key first, this request's value
    /// wins: the later commit wins (SPEC §6.2). Use [`update`](Self::update)
    /// when the new value depends on the old one.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Serialize`] if `value` cannot be serialized;
    /// the session is then unchanged.
    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), Error> {
        let value = to_value(&value)?;
        let mut state = self.lock();
        state.data.set(key, value.clone());
        state.changes.push(Change::Insert(key.to_owned(), value));
        Ok(())
    }

    /// Removes `key`, returning whether it was there.
    pub fn remove(&self, key: &str) -> bool {
        let mut state = self.lock();
        let existed = state.data.remove(key);
        state.changes.push(Change::Remove(key.to_owned()));
        existed
    }

    /// Removes `key` and returns its value: the shape of a flash message.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Deserialize`] if the stored value is not a `T`;
    /// the value is then left in place.
    pub fn take<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let mut state = self.lock();
        let Some(value) = state.data.get(key)? else {
            return Ok(None);
        };
        state.data.remove(key);
        state.changes.push(Change::Remove(key.to_owned()));
        Ok(Some(value))
    }

    /// Replaces the value under `key` with `f(old)` and returns the new value.
    ///
    /// This is the atomic read-modify-write of the session: if a concurrent
    /// request saves this session first, the layer reloads it and runs `f`
    /// again on the newer value before saving, so no update is lost
    /// (SPEC §6.1). `f` may therefore run more than once, and the value saved
    /// can differ from the one returned here.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Deserialize`] if the current value is not a
    /// `T`, or [`ErrorKind::Serialize`] if the new one cannot be serialized;
    /// the session is then unchanged.
    pub fn update<T, F>(&self, key: &str, mut f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T + Send + 'static,
    {
        let current = self.lock().data.get(key)?;
        // `f` runs without the lock, so it may read the session itself.
        let new = f(current);
        let value = to_value(&new)?;
        let mut state = self.lock();
        state.data.set(key, value);
        let reapply = move |current: Option<&Value>| {
            let current = current.map(from_value).transpose()?;
            to_value(&f(current))
        };
        state
            .changes
            .push(Change::Update(key.to_owned(), Box::new(reapply)));
        Ok(new)
    }

    /// Removes every value but keeps the session and its id.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.data.clear();
        state.changes.push(Change::Clear);
    }

    /// Gives the session a new id when the response is sent, keeping its
    /// data; the old id stops working.
    ///
    /// Call it whenever privileges change, above all at login, so an id an
    /// attacker planted before login is worthless after it. The absolute
    /// timeout still runs from the session's creation.
    pub fn cycle_id(&self) {
        let mut state = self.lock();
        if state.stored.is_some() {
            state.rotate = true;
        }
    }

    /// Deletes the session from the store and removes the cookie from the
    /// browser when the response is sent (logout).
    ///
    /// A request still in flight for this session cannot bring it back.
    /// Values inserted after `destroy` start a new session with a new id,
    /// which is how a "signed out" flash message survives a logout.
    pub fn destroy(&self) {
        let mut state = self.lock();
        if let Some(stored) = state.stored.take() {
            state.destroyed = Some(stored.id);
        }
        state.remove_cookie = state.destroyed.is_some() || state.presented.is_some();
        state.data = Data::default();
        state.changes.clear();
        state.rotate = false;
        state.persistent = state.default_persistent;
    }

    /// Returns the id of the stored session, or `None` for a session that is
    /// not stored yet (or was destroyed in this request).
    ///
    /// After [`cycle_id`](Self::cycle_id) this is still the old id until the
    /// response is sent. The id's `Debug` output is redacted.
    pub fn id(&self) -> Option<Id> {
        self.lock().stored.as_ref().map(|stored| stored.id)
    }

    /// Chooses the cookie's lifetime for this session: `true` for a
    /// persistent cookie that outlives the browser ("remember me"), with a
    /// `Max-Age` that never exceeds the server-side deadline; `false` for a
    /// cookie that the browser drops when it closes.
    pub fn set_persistent(&self, persistent: bool) {
        let mut state = self.lock();
        state.persistent = persistent;
        state.changes.push(Change::Persistent(persistent));
    }

    /// Returns whether this session's cookie is persistent.
    pub fn is_persistent(&self) -> bool {
        self.lock().persistent
    }

    /// Returns the number of values in the session.
    pub fn len(&self) -> usize {
        self.lock().data.len()
    }

    /// Returns whether the session holds no values.
    pub fn is_empty(&self) -> bool {
        self.lock().data.is_empty()
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Session")
            .field("stored", &state.stored.is_some())
            .field("len", &state.data.len())
            .field("persistent", &state.persistent)
            .field("pending_changes", &state.changes.len())
            .finish()
    }
}

/// Re-applies `changes` in order to a newer version of the data.
pub(crate) fn apply(
    changes: &mut [Change],
    data: &mut Data,
    persistent: &mut bool,
) -> Result<(), Error> {
    for change in changes {
        match change {
            Change::Insert(key, value) => data.set(key, value.clone()),
            Change::Remove(key) => {
                data.remove(key);
            }
            Change::Update(key, f) => {
                let value = f(data.get::<Value>(key)?.as_ref())?;
                data.set(key, value);
            }
            Change::Clear => data.clear(),
            Change::Persistent(value) => *persistent = *value,
        }
    }
    Ok(())
}

fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, Error> {
    T::deserialize(value).map_err(|error| Error::new(ErrorKind::Deserialize, error))
}

fn to_value<T: Serialize>(value: &T) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|error| Error::new(ErrorKind::Serialize, error))
}

/// The session of a request, not loaded yet.
///
/// The layer puts one in every request's extensions. Loading it costs one
/// store call (none if the request has no valid cookie); axum's [`Session`]
/// extractor does exactly that. Code outside axum loads it itself:
///
/// ```
/// # async fn handle(request: http::Request<()>) -> Result<(), session_layer::Error> {
/// use session_layer::LazySession;
///
/// let lazy = request.extensions().get::<LazySession>().expect("SessionLayer is installed");
/// let session = lazy.load().await?;
/// session.insert("seen", true)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LazySession {
    inner: Arc<Lazy>,
}

struct Lazy {
    shared: Arc<Shared>,
    /// The request's `Cookie` headers, parsed and verified only on load, so a
    /// route that never touches the session pays for neither. A request has
    /// one such line or none, kept without a `Vec` of its own; a clone of a
    /// `HeaderValue` shares the request's buffer.
    cookie: Option<HeaderValue>,
    more_cookies: Vec<HeaderValue>,
    session: OnceCell<Session>,
    /// A load was tried, even if it failed: the response depends on the
    /// cookie either way.
    attempted: AtomicBool,
}

impl LazySession {
    pub(crate) fn new(shared: Arc<Shared>, headers: &HeaderMap) -> Self {
        let mut cookies = headers.get_all(COOKIE).iter().cloned();
        Self {
            inner: Arc::new(Lazy {
                shared,
                cookie: cookies.next(),
                // Empty, and so not allocated, unless there are more lines.
                more_cookies: cookies.collect(),
                session: OnceCell::new(),
                attempted: AtomicBool::new(false),
            }),
        }
    }

    /// Loads the session, once per request: later calls return the same
    /// handle without touching the store.
    ///
    /// A missing, tampered or unverifiable cookie gives a new empty session
    /// without any store call. An unknown or expired id gives a new empty
    /// session too; it is never adopted, and if the request saves anything
    /// the session gets a fresh id.
    ///
    /// # Errors
    ///
    /// Fails if the store fails, or with [`ErrorKind::Deserialize`] if the
    /// stored record is corrupt. The layer then sends no cookie, so the
    /// browser keeps the one it has.
    pub async fn load(&self) -> Result<Session, Error> {
        self.inner.attempted.store(true, Ordering::Relaxed);
        self.inner
            .session
            .get_or_try_init(|| in_span!("session.load", self.inner.load()))
            .await
            .cloned()
    }

    /// Returns whether the request tried to load the session.
    pub(crate) fn attempted(&self) -> bool {
        self.inner.attempted.load(Ordering::Relaxed)
    }

    /// Returns the session if it was loaded during this request.
    pub(crate) fn loaded(&self) -> Option<&Session> {
        self.inner.session.get()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }
}

impl Drop for Lazy {
    fn drop(&mut self) {
        // An `update` closure may hold a clone of the session, which would
        // keep the session alive through its own change log if the request
        // ended before the save took the log out.
        if let Some(session) = self.session.get() {
            session.lock().changes.clear();
        }
    }
}

impl Lazy {
    async fn load(&self) -> Result<Session, Error> {
        let shared = &self.shared;
        let cookies = self.cookie.iter().chain(&self.more_cookies);
        let (id, verified) = match codec::find(cookies, &shared.cookie.name, &shared.ring) {
            Found::Valid(id, verified) => (id, verified),
            Found::Invalid => {
                event!(
                    warn,
                    "session cookie failed verification; treating the request as anonymous"
                );
                return Ok(self.fresh(None));
            }
            Found::Absent => return Ok(self.fresh(None)),
        };
        let record = shared.store.load(&id).await.inspect_err(|_error| {
            event!(error, error = %crate::trace::Chain(_error), "failed to load the session");
        })?;
        let now = shared.now();
        match record {
            Some(record) if record.id == id && shared.lifetime.is_alive(&record, now) => {
                self.loaded(record, verified, now)
            }
            Some(_) => {
                event!(debug, session = %crate::trace::Fingerprint(&id), "session expired");
                Ok(self.fresh(Some(verified)))
            }
            None => {
                event!(debug, session = %crate::trace::Fingerprint(&id), "unknown session id");
                Ok(self.fresh(Some(verified)))
            }
        }
    }

    fn fresh(&self, presented: Option<Verified>) -> Session {
        Session::new(State {
            stored: None,
            data: Data::default(),
            persistent: self.shared.lifetime.persistent,
            changes: Vec::new(),
            rotate: false,
            destroyed: None,
            presented,
            remove_cookie: false,
            default_persistent: self.shared.lifetime.persistent,
        })
    }

    fn loaded(
        &self,
        record: Record,
        verified: Verified,
        now: SystemTime,
    ) -> Result<Session, Error> {
        let (data, persistent) = Data::decode(record.data)?;
        Ok(Session::new(State {
            stored: Some(Stored {
                id: record.id,
                version: record.version,
                created_at: record.created_at,
                expires_at: record.expires_at,
                loaded_at: now,
                persistent,
            }),
            data,
            persistent,
            changes: Vec::new(),
            rotate: false,
            destroyed: None,
            presented: Some(verified),
            remove_cookie: false,
            default_persistent: self.shared.lifetime.persistent,
        }))
    }
}

impl fmt::Debug for LazySession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazySession")
            .field("loaded", &self.loaded().is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_reapply_in_order() {
        let (mut data, mut persistent) =
            Data::decode(b"\x00{\"gone\":1,\"n\":10}"[..].into()).expect("a valid record");
        let mut changes = vec![
            Change::Update(
                "n".into(),
                Box::new(|value: Option<&Value>| {
                    Ok(Value::from(value.and_then(Value::as_u64).unwrap_or(0) + 1))
                }),
            ),
            Change::Remove("gone".into()),
            Change::Insert("k".into(), Value::from("v")),
            Change::Persistent(true),
        ];
        apply(&mut changes, &mut data, &mut persistent).expect("applies");
        assert_eq!(data.get::<u64>("n").expect("a number"), Some(11));
        assert_eq!(data.get::<u64>("gone").expect("nothing"), None);
        assert_eq!(
            data.get::<String>("k").expect("a string").as_deref(),
            Some("v")
        );
        assert_eq!(
            &*data.encode(persistent).expect("encodes"),
            b"\x01{\"k\":\"v\",\"n\":11}"
        );
    }
}
