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
use crate::session::{Edits, Header, Pending, Retired, Rotation, Stored, retire};
use crate::session_cookie::codec;
use crate::session_cookie::{CookieAction, SessionHeaders as Headers};
use crate::store::{Created, Record, Rotated, Updated};
use crate::trace::event;

/// How many fresh ids a new session tries before giving up. With 128-bit ids
/// a second try already means a broken random number generator.
const ID_ATTEMPTS: usize = 3;

/// What a finished request needs for its session.
pub(crate) enum Decision {
    /// No load was tried: nothing to do, not even `Vary`.
    Untouched,
    /// The session was read (or its load failed): `Vary`, and what
    /// [`Headers`] says.
    Headers(Headers),
    /// The store must be written before the response leaves.
    Save(Save),
}

/// Decides what the request's session needs, taking its pending changes.
///
/// # Errors
///
/// Fails with [`ErrorKind::Serialize`] if the changed data cannot be
/// encoded, or with [`ErrorKind::IdRotated`] if the request changed a session
/// through an id a sign-in had just replaced; nothing has been written then.
pub(crate) fn decide(lazy: &LazySession, status: StatusCode) -> Result<Decision, Error> {
    let Some(session) = lazy.loaded() else {
        // A failed load leaves the cookie alone, but the answer still
        // depended on it.
        return Ok(if lazy.attempted() {
            Decision::Headers(Headers::default())
        } else {
            Decision::Untouched
        });
    };
    let config = lazy.config();
    let pending = session.take_pending(config.saves(status))?;
    plan(pending, config)
}

/// The store writes a request needs, and the headers that follow them.
pub(crate) struct Save {
    /// Records `destroy` asked to delete, deleted first.
    delete: Vec<Id>,
    write: Option<Write>,
    /// The headers, with the cookie to send when the write sends none (a
    /// removal).
    headers: Headers,
}

enum Write {
    /// A new session: a record under a fresh id, created now or, for a
    /// session signed in again from a retired record, when that one was.
    Create {
        data: Arc<[u8]>,
        persistent: bool,
        created_at: Option<SystemTime>,
    },
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
    rotate: Option<Rotation>,
    /// Nothing changed: the write only moves the idle deadline.
    refresh_only: bool,
    /// Whether the browser needs the cookie again: a new id, a re-signature,
    /// a new `Max-Age`, or a changed lifetime.
    cookie: bool,
    /// The base is not loaded yet: the write goes to the session a renewal
    /// moved the presented id to, whose version is not known.
    forward: bool,
}

/// The error of a change sent through an id that a sign-in replaced.
fn id_rotated() -> Error {
    Error::message(
        ErrorKind::IdRotated,
        "a concurrent sign-in moved the session to a new id; this request's changes were not saved",
    )
}

/// The pure half of [`decide`]: what `pending` needs, given the layer's
/// configuration.
fn plan(pending: Pending, config: &Config) -> Result<Decision, Error> {
    let headers = Headers {
        cookie: pending.remove_cookie.then_some(CookieAction::Remove),
        private: pending.stored.is_some() || pending.delete.is_some(),
        ended: pending.delete.is_some(),
    };
    if let Some(retired) = pending.retired {
        return plan_retired(pending, retired, headers);
    }
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
            let rotate = pending.rotate;
            if !edits.changed && rotate.is_none() && !refresh {
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
                let headers = Headers { cookie, ..headers };
                return Ok(without_write(pending.delete, headers));
            }
            Some(Write::Replace(Replace {
                base: Base::of(stored),
                refresh_only: !edits.changed && rotate.is_none(),
                cookie: pending.reissue
                    || rotate.is_some()
                    || edits.persistent
                    || stored.persistent != edits.persistent,
                rotate,
                edits,
                forward: false,
            }))
        }
        // A new session is stored only once it holds a value.
        (Some(edits), None) if edits.empty => None,
        (Some(edits), None) => Some(Write::Create {
            data: edits.bytes(),
            persistent: edits.persistent,
            created_at: None,
        }),
    };
    Ok(match write {
        None => without_write(pending.delete, headers),
        Some(write) => Decision::Save(Save {
            delete: pending.delete.into_iter().collect(),
            write: Some(write),
            headers,
        }),
    })
}

/// What a session loaded from a retired record needs: the id the request
/// presented was moved away from a moment ago. Such a request never gets a
/// cookie that could replace the browser's newer one, and never the new id.
fn plan_retired(pending: Pending, retired: Retired, headers: Headers) -> Result<Decision, Error> {
    let headers = Headers {
        cookie: None,
        ..headers
    };
    if let Some(old) = pending.delete {
        // Signing out through the old id: after a renewal it ends the
        // renewed session too; after a sign-in it is refused, so a stale
        // tab cannot end the session it never saw.
        let Retired::Renewed(successor) = retired else {
            return Err(id_rotated());
        };
        let headers = Headers {
            cookie: Some(CookieAction::Remove),
            ..headers
        };
        return Ok(Decision::Save(Save {
            delete: vec![successor, old],
            write: None,
            headers,
        }));
    }
    let (Some(edits), Some(stored)) = (pending.edits, pending.stored) else {
        return Ok(Decision::Headers(headers));
    };
    let write = if pending.rotate.is_some() {
        // Signing in again through the old id (a second tab, a double
        // submit): a session of its own, from what the old id held and
        // this request's changes, under the absolute timeout of the
        // original.
        Write::Create {
            data: edits.bytes(),
            persistent: edits.persistent,
            created_at: Some(stored.created_at),
        }
    } else if !edits.changed {
        return Ok(Decision::Headers(headers));
    } else if let Retired::Renewed(successor) = retired {
        Write::Replace(Replace {
            base: Base {
                id: successor,
                version: 0,
                created_at: stored.created_at,
            },
            edits,
            rotate: None,
            refresh_only: false,
            cookie: false,
            forward: true,
        })
    } else {
        return Err(id_rotated());
    };
    Ok(Decision::Save(Save {
        delete: Vec::new(),
        write: Some(write),
        headers,
    }))
}

/// Only a `destroy`'s delete, if any, stands between the request and its
/// headers.
fn without_write(delete: Option<Id>, headers: Headers) -> Decision {
    match delete {
        None => Decision::Headers(headers),
        Some(id) => Decision::Save(Save {
            delete: vec![id],
            write: None,
            headers,
        }),
    }
}

impl Save {
    /// Writes to the store and returns the headers of the response.
    ///
    /// # Errors
    ///
    /// Fails if the store fails, with [`ErrorKind::SessionGone`] if a
    /// concurrent request ended the session first, with
    /// [`ErrorKind::IdRotated`] if a concurrent sign-in moved it, or with
    /// [`ErrorKind::Conflict`] when the attempts run out.
    pub(crate) async fn run(self, config: Arc<Config>) -> Result<Headers, Error> {
        for id in &self.delete {
            config.store.delete(id).await?;
        }
        let mut headers = self.headers;
        let cookie = match self.write {
            None => None,
            Some(Write::Create {
                data,
                persistent,
                created_at,
            }) => Some(create(&config, data, persistent, created_at).await?),
            Some(Write::Replace(replace)) => replace.run(&config).await?,
        };
        headers.cookie = cookie.or(headers.cookie);
        Ok(headers)
    }
}

async fn create(
    config: &Config,
    data: Arc<[u8]>,
    persistent: bool,
    created_at: Option<SystemTime>,
) -> Result<CookieAction, Error> {
    let now = config.now();
    let created_at = created_at.unwrap_or(now);
    let mut record = Record {
        id: Id::generate()?,
        version: 1,
        data,
        created_at,
        expires_at: config.lifetime.deadline(created_at, now),
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

/// How many renewals a forwarded write follows before giving up.
const MAX_FORWARDS: usize = 4;

impl Replace {
    async fn run(mut self, config: &Config) -> Result<Option<CookieAction>, Error> {
        let store = &config.store;
        if self.forward {
            match Box::pin(self.reload(config)).await? {
                Reloaded::Changed | Reloaded::Unchanged { .. } => {}
                Reloaded::Gone => return Err(gone()),
                Reloaded::Retired { .. } => return Err(id_rotated()),
            }
        }
        let mut target = match self.rotate {
            Some(_) => Id::generate()?,
            None => self.base.id,
        };
        for _ in 0..config.max_save_attempts {
            let now = config.now();
            let deadline = config.lifetime.deadline(self.base.created_at, now);
            let record = Record {
                id: target,
                version: self.base.version + 1,
                data: self.edits.bytes(),
                created_at: self.base.created_at,
                expires_at: deadline,
            };
            let written = if let Some(rotation) = self.rotate {
                let retired = self.retired(config, rotation, &target, now, deadline);
                match store
                    .rotate(&self.base.id, self.base.version, &record, retired.as_ref())
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
            // Boxed: only a lost race reloads, and the reload's state would
            // otherwise enlarge every save's future.
            match Box::pin(self.reload(config)).await? {
                Reloaded::Changed => {}
                // The stored record already holds what this request wanted
                // (or, for a refresh, a newer deadline).
                Reloaded::Unchanged { expires_at } => {
                    return Ok(self.cookie(config, &self.base.id, expires_at, now));
                }
                // A refresh of a session that is gone or moved is simply not
                // needed.
                Reloaded::Gone | Reloaded::Retired { .. } if self.refresh_only => return Ok(None),
                Reloaded::Gone => {
                    event!(info, session = %crate::trace::Fingerprint(&self.base.id), "session ended concurrently; discarding changes");
                    return Err(gone());
                }
                // A second sign-in that lost the race to the first: a
                // session of its own, from what the old id held.
                Reloaded::Retired { created_at } if self.rotate.is_some() => {
                    let data = self.edits.bytes();
                    let persistent = self.edits.persistent;
                    // Boxed: a rare path, kept out of every save's future.
                    let creating = Box::pin(create(config, data, persistent, Some(created_at)));
                    return Ok(Some(creating.await?));
                }
                Reloaded::Retired { .. } => {
                    event!(info, session = %crate::trace::Fingerprint(&self.base.id), "session moved to a new id concurrently; discarding changes");
                    return Err(id_rotated());
                }
            }
        }
        event!(warn, session = %crate::trace::Fingerprint(&self.base.id), "session save gave up after repeated conflicts");
        Err(Error::message(
            ErrorKind::Conflict,
            "concurrent requests kept saving this session first",
        ))
    }

    /// The record a rotation leaves under the old id for the grace period:
    /// the data as it was before, and for a renewal the new id, so that
    /// writes still sent with the old id can follow. `None` without a grace
    /// period: the old record is deleted.
    fn retired(
        &self,
        config: &Config,
        rotation: Rotation,
        target: &Id,
        now: SystemTime,
        deadline: SystemTime,
    ) -> Option<Record> {
        if config.rotation_grace.is_zero() {
            return None;
        }
        let successor = (rotation == Rotation::Renew).then_some(target);
        let end = now
            .checked_add(config.rotation_grace)
            .map_or(deadline, |end| end.min(deadline));
        Some(Record {
            id: self.base.id,
            version: self.base.version + 1,
            data: retire(&self.edits.base, successor),
            created_at: self.base.created_at,
            expires_at: end,
        })
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
    /// A record a renewal left behind is followed to the renewed session,
    /// without the browser ever hearing of its id.
    async fn reload(&mut self, config: &Config) -> Result<Reloaded, Error> {
        for _ in 0..MAX_FORWARDS {
            let now = config.now();
            let record = match config.store.load(&self.base.id).await? {
                Some(record) if config.lifetime.is_alive(&record, now) => record,
                _ => return Ok(Reloaded::Gone),
            };
            match Header::of(&record.data)?.retired {
                None => {}
                Some(Retired::Renewed(successor)) => {
                    self.base.id = successor;
                    // The old holder never learns the new id; only a new
                    // sign-in's own id goes back.
                    self.cookie &= self.rotate.is_some();
                    continue;
                }
                Some(Retired::Cycled) => {
                    if self.rotate.is_some() {
                        self.edits.rebase(record.data)?;
                    }
                    return Ok(Reloaded::Retired {
                        created_at: record.created_at,
                    });
                }
            }
            self.base = Base {
                id: record.id,
                version: record.version,
                created_at: record.created_at,
            };
            let expires_at = record.expires_at;
            self.edits.rebase(record.data)?;
            return Ok(if self.rotate.is_some() || self.edits.changes_base() {
                Reloaded::Changed
            } else {
                Reloaded::Unchanged { expires_at }
            });
        }
        Ok(Reloaded::Gone)
    }
}

fn gone() -> Error {
    Error::message(
        ErrorKind::SessionGone,
        "a concurrent request destroyed or rotated the session",
    )
}

/// What a reload after a lost compare-and-set found.
enum Reloaded {
    /// The session is gone: destroyed, rotated away or expired.
    Gone,
    /// A sign-in moved the session to a new id this request must not learn.
    Retired { created_at: SystemTime },
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
