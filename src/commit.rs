//! Saving the session once the response is ready (SPEC §4.3–4.4, §5, §6, §7.2).
//!
//! [`finish`] decides, without any I/O, what the request's session needs:
//! nothing, only a cookie header, or store writes. Writes are compare-and-set
//! against the version that was loaded; when a concurrent request saved
//! first, the session is reloaded and this request's changes are applied
//! again, until the write goes through, the session is gone, or the attempts
//! run out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{CACHE_CONTROL, SET_COOKIE, VARY};
use http::{HeaderValue, Response, StatusCode};

use crate::codec;
use crate::config::CookieAction;
use crate::data::Data;
use crate::error::{Error, ErrorKind};
use crate::id::Id;
use crate::key::Verified;
use crate::layer::Shared;
use crate::session::{self, Change, LazySession, Stored};
use crate::store::{Created, Record, Rotated, Updated};
use crate::trace::{event, in_span};

/// How many fresh ids a new session tries before giving up. With 128-bit ids
/// a second try already means a broken random number generator.
const ID_ATTEMPTS: usize = 3;

pub(crate) type Commit = Pin<Box<dyn Future<Output = Result<Option<CookieAction>, Error>> + Send>>;

/// What a finished request needs for its session.
pub(crate) enum Finish {
    /// No load was tried: nothing to do, not even `Vary`.
    Untouched,
    /// The session was read (or its load failed); `Vary` and at most a
    /// cookie header are needed.
    Ready(Option<CookieAction>),
    /// The store must be written.
    Save(Commit),
}

/// Decides what the request's session needs, taking its pending changes.
pub(crate) fn finish(lazy: &LazySession, status: StatusCode) -> Finish {
    let Some(session) = lazy.loaded() else {
        // A failed load leaves the cookie alone, but the answer still
        // depended on it.
        return if lazy.attempted() {
            Finish::Ready(None)
        } else {
            Finish::Untouched
        };
    };
    let shared = Arc::clone(lazy.shared());
    let mut state = session.lock();
    let delete = state.destroyed.take();
    let remove_cookie = std::mem::take(&mut state.remove_cookie);
    let changes = std::mem::take(&mut state.changes);
    let rotate = std::mem::take(&mut state.rotate);

    let write = if !shared.saves(status) {
        None
    } else if let Some(stored) = &state.stored {
        let reissue = state.presented == Some(Verified::Fallback);
        // Any change is written, even one that leaves the bytes as loaded: the
        // compare-and-set is what lets this request's later commit win over a
        // concurrent one (SPEC §6.2).
        let data = if changes.is_empty() {
            None
        } else {
            match state.data.encode(state.persistent) {
                Ok(data) => Some(data),
                Err(error) => return Finish::Save(Box::pin(async move { Err(error) })),
            }
        };
        // The clock as read at load time decides: a refresh that falls due
        // during the handler waits for the next request, one clock read less.
        let now = stored.loaded_at;
        let refresh = shared
            .lifetime
            .refresh_due(stored.created_at, stored.expires_at, now);
        if data.is_none() && !rotate && !refresh {
            // Nothing to store; a fallback-verified cookie is re-signed.
            let cookie = reissue.then(|| {
                set_cookie(
                    &shared,
                    &stored.id,
                    state.persistent,
                    (stored.created_at, stored.expires_at),
                    now,
                )
            });
            return ready_or_delete(shared, delete, cookie);
        }
        let refresh_only = data.is_none() && !rotate;
        Some(Write::Replace(Replace {
            base: Base::of(stored),
            data: data.unwrap_or_else(|| Arc::clone(state.data.record())),
            persistent: state.persistent,
            changes,
            rotate,
            refresh_only,
            cookie: reissue || rotate || state.persistent || stored.persistent != state.persistent,
        }))
    } else if state.data.is_empty() {
        None
    } else {
        match state.data.encode(state.persistent) {
            Ok(data) => Some(Write::Create {
                data,
                persistent: state.persistent,
            }),
            Err(error) => return Finish::Save(Box::pin(async move { Err(error) })),
        }
    };
    drop(state);

    let cookie = remove_cookie.then_some(CookieAction::Remove);
    match write {
        None => ready_or_delete(shared, delete, cookie),
        Some(write) => Finish::Save(Box::pin(in_span!(
            "session.save",
            save(shared, delete, write, cookie)
        ))),
    }
}

fn ready_or_delete(
    shared: Arc<Shared>,
    delete: Option<Id>,
    cookie: Option<CookieAction>,
) -> Finish {
    match delete {
        None => Finish::Ready(cookie),
        Some(id) => Finish::Save(Box::pin(in_span!("session.save", async move {
            shared.store.delete(&id).await?;
            Ok(cookie)
        }))),
    }
}

enum Write {
    Create { data: Arc<[u8]>, persistent: bool },
    Replace(Replace),
}

/// The version of the record a write builds on.
struct Base {
    id: Id,
    version: u64,
    created_at: SystemTime,
}

impl Base {
    fn of(stored: &Stored) -> Self {
        Self {
            id: stored.id,
            version: stored.version,
            created_at: stored.created_at,
        }
    }
}

struct Replace {
    base: Base,
    data: Arc<[u8]>,
    persistent: bool,
    changes: Vec<Change>,
    rotate: bool,
    refresh_only: bool,
    /// Whether the browser needs the cookie again: a new id, a re-signature,
    /// a new `Max-Age`, or a changed lifetime.
    cookie: bool,
}

async fn save(
    shared: Arc<Shared>,
    delete: Option<Id>,
    write: Write,
    cookie: Option<CookieAction>,
) -> Result<Option<CookieAction>, Error> {
    if let Some(id) = delete {
        shared.store.delete(&id).await?;
    }
    match write {
        Write::Create { data, persistent } => create(&shared, data, persistent).await.map(Some),
        Write::Replace(replace) => replace.run(&shared).await.map(|set| set.or(cookie)),
    }
}

async fn create(shared: &Shared, data: Arc<[u8]>, persistent: bool) -> Result<CookieAction, Error> {
    let now = shared.now();
    let mut record = Record {
        id: Id::generate()?,
        version: 1,
        data,
        created_at: now,
        expires_at: shared.lifetime.deadline(now, now),
    };
    for _ in 0..ID_ATTEMPTS {
        match shared.store.create(&record).await? {
            Created::Created => {
                return Ok(set_cookie(
                    shared,
                    &record.id,
                    persistent,
                    (record.created_at, record.expires_at),
                    now,
                ));
            }
            Created::IdTaken => record.id = Id::generate()?,
        }
    }
    Err(Error::message(
        ErrorKind::Store,
        "no unused session id was found",
    ))
}

impl Replace {
    async fn run(mut self, shared: &Shared) -> Result<Option<CookieAction>, Error> {
        let store = &shared.store;
        let mut target = if self.rotate {
            Id::generate()?
        } else {
            self.base.id
        };
        for _ in 0..shared.max_save_attempts {
            let now = shared.now();
            let record = Record {
                id: target,
                version: self.base.version + 1,
                data: Arc::clone(&self.data),
                created_at: self.base.created_at,
                expires_at: shared.lifetime.deadline(self.base.created_at, now),
            };
            let written = if self.rotate {
                match store
                    .rotate(&self.base.id, self.base.version, &record)
                    .await?
                {
                    Rotated::Rotated => true,
                    Rotated::Stale => false,
                    Rotated::IdTaken => {
                        target = Id::generate()?;
                        continue;
                    }
                }
            } else {
                store.update(&record, self.base.version).await? == Updated::Updated
            };
            if written {
                let cookie = self.cookie.then(|| {
                    set_cookie(
                        shared,
                        &record.id,
                        self.persistent,
                        (record.created_at, record.expires_at),
                        now,
                    )
                });
                return Ok(cookie);
            }
            event!(debug, session = %crate::trace::Fingerprint(&self.base.id), "session write conflict; re-applying changes");
            match self.reload(shared).await? {
                Reloaded::Changed => {}
                Reloaded::Unchanged { expires_at } => {
                    // The stored record already holds what this request wanted
                    // (or, for a refresh, a newer deadline).
                    let cookie = self.cookie.then(|| {
                        set_cookie(
                            shared,
                            &self.base.id,
                            self.persistent,
                            (self.base.created_at, expires_at),
                            now,
                        )
                    });
                    return Ok(cookie);
                }
                // A refresh of a session that is gone is simply not needed.
                Reloaded::Gone if self.refresh_only => return Ok(None),
                Reloaded::Gone => {
                    event!(info, session = %crate::trace::Fingerprint(&self.base.id), "session ended concurrently; discarding changes");
                    return Err(Error::message(
                        ErrorKind::SessionGone,
                        "a concurrent request destroyed or rotated the session",
                    ));
                }
            }
        }
        event!(warn, session = %crate::trace::Fingerprint(&self.base.id), "session save gave up after repeated conflicts");
        Err(Error::message(
            ErrorKind::Conflict,
            "concurrent requests kept saving this session first",
        ))
    }

    /// Reloads the record and re-applies this request's changes to it.
    async fn reload(&mut self, shared: &Shared) -> Result<Reloaded, Error> {
        let now = shared.now();
        let record = match shared.store.load(&self.base.id).await? {
            Some(record) if shared.lifetime.is_alive(&record, now) => record,
            _ => return Ok(Reloaded::Gone),
        };
        let (mut data, mut persistent) = Data::decode(record.data)?;
        session::apply(&mut self.changes, &mut data, &mut persistent)?;
        self.data = data.encode(persistent)?;
        self.persistent = persistent;
        self.base = Base {
            id: record.id,
            version: record.version,
            created_at: record.created_at,
        };
        if self.rotate || self.data != *data.record() {
            Ok(Reloaded::Changed)
        } else {
            Ok(Reloaded::Unchanged {
                expires_at: record.expires_at,
            })
        }
    }
}

/// What a reload after a lost compare-and-set found.
enum Reloaded {
    /// The session is gone: destroyed, rotated away or expired.
    Gone,
    /// The changes, re-applied, still change the record: write again.
    Changed,
    /// The record already holds what this request wanted.
    Unchanged { expires_at: SystemTime },
}

/// The cookie for `id`, with a `Max-Age` for a persistent session that ends
/// no later than the server stops honouring it: the stored deadline, capped
/// by the current configuration's clocks (SPEC §5.2).
fn set_cookie(
    shared: &Shared,
    id: &Id,
    persistent: bool,
    (created_at, expires_at): (SystemTime, SystemTime),
    now: SystemTime,
) -> CookieAction {
    let deadline = expires_at.min(shared.lifetime.deadline(created_at, now));
    CookieAction::Set {
        value: codec::encode(id, &shared.ring),
        max_age: persistent.then(|| deadline.duration_since(now).unwrap_or(Duration::ZERO)),
    }
}

/// Adds the session headers to a response whose session was read.
pub(crate) fn write_headers<B>(
    lazy: &LazySession,
    response: &mut Response<B>,
    cookie: Option<&CookieAction>,
) {
    let headers = response.headers_mut();
    add_vary_cookie(headers);
    let Some(cookie) = cookie else {
        return;
    };
    let shared = lazy.shared();
    // `validate` rendered both shapes of cookie when the layer was built.
    let Some(value) = shared.cookie.render(cookie) else {
        return;
    };
    remove_session_cookies(headers, &shared.cookie.name);
    headers.append(SET_COOKIE, value);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Completes a response after the store writes.
pub(crate) fn respond<B: From<String>>(
    lazy: &LazySession,
    mut response: Response<B>,
    outcome: Result<Option<CookieAction>, Error>,
) -> Response<B> {
    match outcome {
        Ok(cookie) => {
            write_headers(lazy, &mut response, cookie.as_ref());
            response
        }
        Err(error) => {
            event!(error, error = %crate::trace::Chain(&error), "failed to save the session");
            let mut response = lazy.shared().error_response(&error).map(B::from);
            let headers = response.headers_mut();
            remove_session_cookies(headers, &lazy.shared().cookie.name);
            add_vary_cookie(headers);
            response
        }
    }
}

/// Keeps at most one `Set-Cookie` for the session name: drops any the handler
/// set itself.
fn remove_session_cookies(headers: &mut http::HeaderMap, name: &str) {
    let is_session_cookie = |value: &HeaderValue| {
        let bytes = value.as_bytes();
        bytes.starts_with(name.as_bytes()) && bytes.get(name.len()) == Some(&b'=')
    };
    if !headers.get_all(SET_COOKIE).iter().any(is_session_cookie) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|value| !is_session_cookie(value))
        .cloned()
        .collect();
    headers.remove(SET_COOKIE);
    for value in kept {
        headers.append(SET_COOKIE, value);
    }
}

/// Adds `Cookie` to `Vary`, merged into the existing list.
fn add_vary_cookie(headers: &mut http::HeaderMap) {
    let mut tokens = Vec::new();
    for value in headers.get_all(VARY) {
        let Ok(text) = value.to_str() else { continue };
        for token in text
            .split(',')
            .map(str::trim)
            .filter(|token| !token.is_empty())
        {
            if token == "*" || token.eq_ignore_ascii_case("cookie") {
                return;
            }
            tokens.push(token.to_owned());
        }
    }
    if tokens.is_empty() {
        headers.insert(VARY, HeaderValue::from_static("Cookie"));
        return;
    }
    tokens.push("Cookie".to_owned());
    if let Ok(value) = HeaderValue::from_str(&tokens.join(", ")) {
        headers.insert(VARY, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vary_is_merged_once() {
        let mut headers = http::HeaderMap::new();
        add_vary_cookie(&mut headers);
        assert_eq!(headers[VARY], "Cookie");
        add_vary_cookie(&mut headers);
        assert_eq!(headers.get_all(VARY).iter().count(), 1);

        let mut headers = http::HeaderMap::new();
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
        headers.append(VARY, HeaderValue::from_static("Origin"));
        add_vary_cookie(&mut headers);
        assert_eq!(headers[VARY], "Accept-Encoding, Origin, Cookie");

        let mut headers = http::HeaderMap::new();
        headers.insert(VARY, HeaderValue::from_static("*"));
        add_vary_cookie(&mut headers);
        assert_eq!(headers[VARY], "*");
    }

    #[test]
    fn handler_session_cookies_are_replaced() {
        let mut headers = http::HeaderMap::new();
        headers.append(SET_COOKIE, HeaderValue::from_static("id=handler; Path=/"));
        headers.append(SET_COOKIE, HeaderValue::from_static("idx=keep"));
        headers.append(SET_COOKIE, HeaderValue::from_static("theme=dark"));
        remove_session_cookies(&mut headers, "id");
        let left: Vec<_> = headers.get_all(SET_COOKIE).iter().collect();
        assert_eq!(left, ["idx=keep", "theme=dark"]);
    }
}
