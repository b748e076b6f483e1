//! Hooks for the fuzz target (`fuzz/`) and the property tests
//! (`tests/it/proptest_codec.rs`), behind the `_fuzzing` feature.
//!
//! Not part of the public API: hidden from the docs, and free to change in any
//! release. They expose the strict `Cookie` header parser and the verifier
//! exactly as the layer runs them, plus a count of the MAC checks a header
//! costs, so that a test can bound the work an attacker can cause.

use http::HeaderValue;

use crate::id::Id;
use crate::key::{Key, KeyRing, TAG_LEN, Verified};
use crate::session_cookie::codec::{self, Found};

/// The most cookies carrying the session name that are checked per request.
pub const MAX_CANDIDATES: usize = codec::MAX_CANDIDATES;

/// The length of every valid cookie value (64 characters).
pub const VALUE_LEN: usize = codec::VALUE_LEN;

/// The layer's cookie verifier for one cookie name and one key ring.
#[derive(Debug)]
pub struct Verifier {
    ring: KeyRing,
    name: String,
}

/// What one look at a request's `Cookie` headers found, and what it cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The id of the first cookie that verified, if any.
    pub id: Option<Id>,
    /// Whether a fallback key, not the primary, verified it.
    pub by_fallback: bool,
    /// Whether any cookie carried the session name at all.
    pub named: bool,
    /// How many decoded values were checked against the key ring (each check
    /// tries the primary key, then every fallback key).
    pub verifications: usize,
}

impl Verifier {
    /// Returns the verifier a layer with these keys and this cookie name uses.
    pub fn new(primary: &Key, fallbacks: &[Key], name: &str) -> Self {
        Self {
            ring: KeyRing::new(primary, fallbacks, name),
            name: name.to_owned(),
        }
    }

    /// Returns the cookie value the layer would send for `id`.
    pub fn sign(&self, id: &Id) -> String {
        codec::encode(id, &self.ring)
    }

    /// Looks for the session cookie in `headers`, the request's `Cookie`
    /// header lines, as the layer does before any store call.
    pub fn find(&self, headers: &[HeaderValue]) -> Outcome {
        let mut verifications = 0;
        let found = codec::find_with(headers, &self.name, |id, tag| {
            verifications += 1;
            self.ring.verify(id, tag)
        });
        let (id, by_fallback, named) = match found {
            Found::Absent => (None, false, false),
            Found::Invalid => (None, false, true),
            Found::Valid(id, verified) => (Some(id), verified == Verified::Fallback, true),
        };
        Outcome {
            id,
            by_fallback,
            named,
            verifications,
        }
    }
}

/// Splits a cookie value into its id and tag, refusing anything but the
/// canonical encoding (no key involved).
pub fn decode(value: &[u8]) -> Option<(Id, [u8; TAG_LEN])> {
    codec::decode(value)
}
