//! Sessions for tower and axum (crate docs are written in a later step).
#![forbid(unsafe_code)]

mod error;
mod id;
mod key;
pub mod store;

pub use error::{Error, ErrorKind};
pub use id::Id;
pub use key::{Key, MIN_KEY_LEN};
#[cfg(feature = "memory-store")]
pub use store::memory::MemoryStore;
pub use store::{Created, Record, Rotated, SessionStore, Updated};
