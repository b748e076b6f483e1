//! Saving a request's session once the response is ready.
//!
//! [`decide`] works out, without any I/O, what the request needs: nothing,
//! only response headers, or store writes ([`Save`]). [`Save::run`] then
//! writes. Every write of an existing session is a compare-and-set against
//! the version that was loaded; when a concurrent request saved first, the
//! session is reloaded and this request's changes are applied again, until
//! the write goes through, the session is gone, or the attempts run out. A
//! record that is gone is never written again, so a slow request cannot
//! bring back a session that was logged out.

use std::sync::Arc;
use std::time::SystemTime;

use http::StatusCode;

use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::id::Id;
use crate::load::LazySession;
use crate::session::{Edits, Pending, Stored};
use crate::session_cookie::CookieAction;
use crate::session_cookie::codec;
use crate::store::{Created, Record, Rotated, Updated};
use crate::trace::event;

/// How many fresh ids a new session tries before giving up. With 128-bit ids
/// a second try already means a broken random number generator.
const ID_ATTEMPTS: usize = 3;

/// What a finished request needs for its session.
pub(crate) enum Decision {
    /// No load was tried: nothing to do, not even `Vary`.
    Untouched,
    /// The session was read (or its load failed): `Vary`, and at most a
    /// cookie header.
    Headers(Option<CookieAction>),
    /// The store must be written before the response leaves.
    Save(Save),
}

/// Decides what the request's session needs, taking its pending changes.
///
/// # Errors
///
/// Fails with [`ErrorKind::Serialize`] if the changed data cannot be
/// encoded; nothing has been written then.
pub(crate) fn decide(lazy: &LazySession, status: StatusCode) -> Result<Decision, Error> {
    let Some(session) = lazy.loaded() else {
        // A failed load leaves the cookie alone, but the answer still
        // depended on it.
        return Ok(if lazy.attempted() {
            Decision::Headers(None)
        } else {
            Decision::Untouched
        });
    };
    let config = lazy.config();
    let pending = session.take_pending(config.saves(status))?;
    Ok(plan(pending, config))
}

/// The store writes a request needs, and the cookie that follows them.
pub(crate) struct Save {
    /// A record `destroy` asked to delete, deleted first.
    delete: Option<Id>,
    write: Option<Write>,
    /// The cookie to send when the write sends none (a removal).
    cookie: Option<CookieAction>,
}

enum Write {
    /// A new session: a record under a fresh id.
    Create(Edits),
    /// A stored session: a compare-and-set, or a rotation to a new id.
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
    edits: Edits,
    rotate: bool,
    /// Nothing changed: the write only moves the idle deadline.
    refresh_only: bool,
    /// Whether the browser needs the cookie again: a new id, a re-signature,
    /// a new `Max-Age`, or a changed lifetime.
    cookie: bool,
}

/// The pure half of [`decide`]: what `pending` needs, given the layer's
/// configuration.
fn plan(pending: Pending, config: &Config) -> Decision {
    let removal = pending.remove_cookie.then_some(CookieAction::Remove);
    let write = match (pending.edits, &pending.stored) {
        // The status saves nothing.
        (None, _) => None,
        (Some(edits), Some(stored)) => {
            // The clock as read at load time decides: a refresh that falls
            // due during the handler waits for the next request.
            let now = stored.loaded_at;
            let refresh = config
                .lifetime
                .refresh_due(stored.created_at, stored.expires_at, now);
            // Any change is written, even one that leaves the bytes as
            // loaded: the compare-and-set is what lets this request's later
            // commit win over a concurrent one.
            let changed = edits.encoded.is_some();
            if !changed && !pending.rotate && !refresh {
                // Nothing to store; a fallback-verified cookie is re-signed.
                let cookie = pending.reissue.then(|| {
                    set_cookie(
                        config,
                        &stored.id,
                        edits.persistent,
                        (stored.created_at, stored.expires_at),
                        now,
                    )
                });
                return without_write(pending.delete, cookie);
            }
            Some(Write::Replace(Replace {
                base: Base::of(stored),
                refresh_only: !changed && !pending.rotate,
                cookie: pending.reissue
                    || pending.rotate
                    || edits.persistent
                    || stored.persistent != edits.persistent,
                rotate: pending.rotate,
                edits,
            }))
        }
        // A new session is stored only once it holds a value.
        (Some(edits), None) if edits.empty => None,
        (Some(edits), None) => Some(Write::Create(edits)),
    };
    match write {
        None => without_write(pending.delete, removal),
        Some(write) => Decision::Save(Save {
            delete: pending.delete,
            write: Some(write),
            cookie: removal,
        }),
    }
}

/// Only a `destroy`'s delete, if any, stands between the request and its
/// headers.
fn without_write(delete: Option<Id>, cookie: Option<CookieAction>) -> Decision {
    match delete {
        None => Decision::Headers(cookie),
        Some(id) => Decision::Save(Save {
            delete: Some(id),
            write: None,
            cookie,
        }),
    }
}

impl Save {
    /// Writes to the store and returns the cookie the response sets.
    ///
    /// # Errors
    ///
    /// Fails if the store fails, with [`ErrorKind::SessionGone`] if a
    /// concurrent request ended the session first, or with
    /// [`ErrorKind::Conflict`] when the attempts run out.
    pub(crate) async fn run(self, config: Arc<Config>) -> Result<Option<CookieAction>, Error> {
        if let Some(id) = self.delete {
            config.store.delete(&id).await?;
        }
        match self.write {
            None => Ok(self.cookie),
            Some(Write::Create(edits)) => create(&config, edits.bytes(), edits.persistent)
                .await
                .map(Some),
            Some(Write::Replace(replace)) => {
                replace.run(&config).await.map(|set| set.or(self.cookie))
            }
        }
    }
}

async fn create(config: &Config, data: Arc<[u8]>, persistent: bool) -> Result<CookieAction, Error> {
    let now = config.now();
    let mut record = Record {
        id: Id::generate()?,
        version: 1,
        data,
        created_at: now,
        expires_at: config.lifetime.deadline(now, now),
    };
    for _ in 0..ID_ATTEMPTS {
        match config.store.create(&record).await? {
            Created::Created => {
                return Ok(set_cookie(
                    config,
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
    async fn run(mut self, config: &Config) -> Result<Option<CookieAction>, Error> {
        let store = &config.store;
        let mut target = if self.rotate {
            Id::generate()?
        } else {
            self.base.id
        };
        for _ in 0..config.max_save_attempts {
            let now = config.now();
            let record = Record {
                id: target,
                version: self.base.version + 1,
                data: self.edits.bytes(),
                created_at: self.base.created_at,
                expires_at: config.lifetime.deadline(self.base.created_at, now),
            };
            let written = if self.rotate {
                match store
                    .rotate(&self.base.id, self.base.version, &record, None)
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
                return Ok(self.cookie(config, &record.id, record.expires_at, now));
            }
            event!(debug, session = %crate::trace::Fingerprint(&self.base.id), "session write conflict; re-applying changes");
            match self.reload(config).await? {
                Reloaded::Changed => {}
                // The stored record already holds what this request wanted
                // (or, for a refresh, a newer deadline).
                Reloaded::Unchanged { expires_at } => {
                    return Ok(self.cookie(config, &self.base.id, expires_at, now));
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

    /// The cookie for `id` once written, if the browser needs it again.
    fn cookie(
        &self,
        config: &Config,
        id: &Id,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Option<CookieAction> {
        self.cookie.then(|| {
            set_cookie(
                config,
                id,
                self.edits.persistent,
                (self.base.created_at, expires_at),
                now,
            )
        })
    }

    /// Reloads the record and re-applies this request's changes to it.
    async fn reload(&mut self, config: &Config) -> Result<Reloaded, Error> {
        let now = config.now();
        let record = match config.store.load(&self.base.id).await? {
            Some(record) if config.lifetime.is_alive(&record, now) => record,
            _ => return Ok(Reloaded::Gone),
        };
        self.base = Base {
            id: record.id,
            version: record.version,
            created_at: record.created_at,
        };
        let expires_at = record.expires_at;
        self.edits.rebase(record.data)?;
        if self.rotate || self.edits.changes_base() {
            Ok(Reloaded::Changed)
        } else {
            Ok(Reloaded::Unchanged { expires_at })
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

/// The cookie for `id`; a persistent one carries a `Max-Age` that ends no
/// later than the server stops honouring the session.
fn set_cookie(
    config: &Config,
    id: &Id,
    persistent: bool,
    (created_at, expires_at): (SystemTime, SystemTime),
    now: SystemTime,
) -> CookieAction {
    CookieAction::Set {
        value: codec::encode(id, &config.ring),
        max_age: persistent.then(|| config.lifetime.max_age(created_at, expires_at, now)),
    }
}
