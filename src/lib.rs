//! Sessions for tower and axum (crate docs are written in a later step).
#![forbid(unsafe_code)]

mod codec;
mod commit;
mod config;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod id;
mod key;
mod layer;
mod service;
mod session;
pub mod store;
mod trace;

pub use config::DEFAULT_COOKIE_NAME;
pub use cookie::SameSite;
pub use error::{Error, ErrorKind};
#[cfg(feature = "axum")]
pub use extract::SessionRejection;
pub use future::ResponseFuture;
pub use id::Id;
pub use key::{Key, MIN_KEY_LEN};
pub use layer::{
    DEFAULT_ABSOLUTE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_SAVE_ATTEMPTS, DEFAULT_REFRESH_AFTER,
    MAX_TIMEOUT, SessionLayer, SessionLayerBuilder,
};
pub use service::SessionService;
pub use session::{LazySession, Session};
#[cfg(feature = "memory-store")]
pub use store::memory::MemoryStore;
pub use store::{Created, Record, Rotated, SessionStore, Updated};
