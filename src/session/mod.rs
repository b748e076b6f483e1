//! The session handle: one request's session, read and written
//! synchronously once loaded.
//!
//! [`data`] holds the values, read in place from the stored record;
//! [`pending`] keeps the change log and builds what the request hands to
//! saving when the response is ready.

mod data;
mod pending;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use self::data::Data;
pub(crate) use self::data::Header;
use self::pending::Change;
pub(crate) use self::pending::{Edits, Pending, Retired, Rotation, Stored, retire};
use crate::error::{Error, ErrorKind};
use crate::id::Id;
use crate::key::Verified;
use crate::store::Record;

/// The session of the current request.
///
/// Extract it in an axum handler (feature `axum`), or get it from the request
/// extensions through [`LazySession::load`](crate::LazySession::load). Loading happens once per request,
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

/// One request's session, behind the handle's lock.
struct State {
    /// `None` for a new session, or after `destroy`.
    stored: Option<Stored>,
    data: Data,
    persistent: bool,
    changes: Vec<Change>,
    rotate: Option<Rotation>,
    /// The record was left under this id by a rotation: the session lives on
    /// under a new id that this request must never learn.
    retired: Option<Retired>,
    /// A record that `destroy` asked to delete.
    destroyed: Option<Id>,
    /// The request came with a verified session cookie.
    presented: Option<Verified>,
    /// `destroy` was called: the browser's cookie must go.
    remove_cookie: bool,
    /// The layer's cookie lifetime for new sessions, restored by `destroy`.
    default_persistent: bool,
}

impl Session {
    fn new(state: State) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Returns a new, empty session. `presented` says whether the request
    /// came with a verified cookie (for an unknown or expired id).
    pub(crate) fn fresh(presented: Option<Verified>, persistent: bool) -> Self {
        Self::new(State {
            stored: None,
            data: Data::default(),
            persistent,
            changes: Vec::new(),
            rotate: None,
            retired: None,
            destroyed: None,
            presented,
            remove_cookie: false,
            default_persistent: persistent,
        })
    }

    /// Returns the session stored in `record`, loaded at `now`.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Deserialize`] if the record does not decode.
    pub(crate) fn loaded(
        record: Record,
        presented: Verified,
        now: std::time::SystemTime,
        default_persistent: bool,
    ) -> Result<Self, Error> {
        let (data, header) = Data::decode(record.data)?;
        let persistent = header.persistent;
        Ok(Self::new(State {
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
            rotate: None,
            retired: header.retired,
            destroyed: None,
            presented: Some(presented),
            remove_cookie: false,
            default_persistent,
        }))
    }

    /// Takes what the request changed, for saving: called once, when the
    /// response is ready. With `save` false (the status saves nothing) the
    /// changes are dropped, but a `destroy` is still handed over.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Serialize`] if the data cannot be encoded.
    pub(crate) fn take_pending(&self, save: bool) -> Result<Pending, Error> {
        let mut state = self.lock();
        let state = &mut *state;
        let changes = std::mem::take(&mut state.changes);
        let edits = if save {
            // A session loaded from a retired record is stored again, if at
            // all, as a live record: always encoded.
            let always = state.retired.is_some();
            let stored = state.stored.is_some();
            Some(Edits::new(
                changes,
                &state.data,
                state.persistent,
                always,
                stored,
            )?)
        } else {
            None
        };
        Ok(Pending {
            stored: state.stored,
            delete: state.destroyed.take(),
            remove_cookie: std::mem::take(&mut state.remove_cookie),
            reissue: state.presented == Some(Verified::Fallback),
            rotate: state.rotate.take(),
            retired: state.retired,
            edits,
        })
    }

    /// Drops the change log. An `update` closure may hold a clone of the
    /// session, which would keep the session alive through its own log if
    /// the request ended before the save took the log out.
    pub(crate) fn forget_changes(&self) {
        self.lock().changes.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
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
    /// wins: the later commit wins. Use [`update`](Self::update)
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
    /// however many requests update it at once. `f` may therefore run more than once, and the value saved
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
    ///
    /// A request that is still in flight with the old id (another tab, a
    /// background fetch) is not treated as a stranger during the layer's
    /// rotation grace period
    /// ([`SessionLayerBuilder::rotation_grace`](crate::SessionLayerBuilder::rotation_grace)):
    /// it reads the data as it was before the rotation, gets no cookie, and
    /// its changes are refused with
    /// [`ErrorKind::IdRotated`](crate::ErrorKind::IdRotated), so the app can
    /// ask the user to try again. It never sees the new id or what this
    /// request added, so an id planted before sign-in stays worthless.
    pub fn cycle_id(&self) {
        let mut state = self.lock();
        if state.stored.is_some() {
            state.rotate = Some(Rotation::Cycle);
        }
    }

    /// Gives the session a new id when the response is sent, at the same
    /// privilege: the periodic renewal that limits how long a stolen id is
    /// worth anything.
    ///
    /// Like [`cycle_id`](Self::cycle_id), the old id stops working after the
    /// grace period, and a request still in flight with it gets no cookie
    /// and never learns the new id. Unlike `cycle_id`, that request's changes
    /// are not refused: they are applied to the renewed session, since the
    /// holder of the old id had the same rights. Use `cycle_id` whenever
    /// privileges change.
    pub fn renew_id(&self) {
        let mut state = self.lock();
        if state.stored.is_some() && state.rotate.is_none() {
            state.rotate = Some(Rotation::Renew);
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
        state.rotate = None;
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

fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, Error> {
    T::deserialize(value).map_err(|error| Error::new(ErrorKind::Deserialize, error))
}

fn to_value<T: Serialize>(value: &T) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|error| Error::new(ErrorKind::Serialize, error))
}
