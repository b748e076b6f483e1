//! Signing keys and the key ring that signs and verifies session cookies.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, ErrorKind};
use crate::id::Id;

type HmacSha256 = Hmac<Sha256>;

/// The length of an HMAC-SHA256 tag in bytes.
pub(crate) const TAG_LEN: usize = 32;

/// Separates this crate's MACs from any other use of the same key.
const DOMAIN: &[u8] = b"session-layer/v1 cookie";

/// A secret key that signs session cookies (HMAC-SHA256).
///
/// A key holds at least [`Key::MIN_LEN`] bytes. Load it from your secret store
/// at start-up and keep it stable: changing the key signs everyone out, unless
/// the old key stays on as a fallback (see
/// [`SessionLayerBuilder::fallback_key`](crate::SessionLayerBuilder::fallback_key)).
/// `Debug` prints `Key(REDACTED)`.
#[derive(Clone)]
pub struct Key(Box<[u8]>);

impl Key {
    /// The fewest bytes a key may hold: 32.
    pub const MIN_LEN: usize = 32;

    /// Returns a new random 64-byte key from the operating system's CSPRNG.
    ///
    /// Sessions signed with a generated key do not survive a restart; use it
    /// for tests and demos.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Random`] only if the operating system's random
    /// number generator is unavailable.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = vec![0; 64];
        getrandom::fill(&mut bytes).map_err(|error| Error::new(ErrorKind::Random, error))?;
        Ok(Self(bytes.into_boxed_slice()))
    }

    /// Creates a key from raw secret bytes.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Key`] if `bytes` is shorter than
    /// [`Key::MIN_LEN`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < Self::MIN_LEN {
            return Err(Error::message(
                ErrorKind::Key,
                "a session key needs at least 32 bytes",
            ));
        }
        Ok(Self(bytes.into()))
    }
}

impl TryFrom<&[u8]> for Key {
    type Error = Error;

    fn try_from(bytes: &[u8]) -> Result<Self, Error> {
        Self::from_bytes(bytes)
    }
}

/// Takes the 64-byte master key of a `cookie::Key`, the key type of
/// axum-extra's signed and private cookie jars, so an app that already holds
/// one can sign sessions with it.
///
/// ```
/// let jar_key = cookie::Key::generate();
/// let key = session_layer::Key::from(&jar_key);
/// # let _ = key;
/// ```
///
/// The layer keys its MAC with all 64 bytes and prefixes every message with
/// a label of its own, so a session tag is never a valid jar signature, nor
/// the other way round.
impl From<&cookie::Key> for Key {
    fn from(key: &cookie::Key) -> Self {
        Self(key.master().into())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(REDACTED)")
    }
}

/// Which key of the ring verified a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verified {
    /// The primary key: the cookie can stay as it is.
    Primary,
    /// A fallback key: the cookie must be re-issued under the primary key.
    Fallback,
}

/// The keys of one layer, each with the cookie name already fed into its MAC.
///
/// The first key signs; every key verifies. Keeping the MAC state keyed and
/// prefixed saves two SHA-256 blocks per cookie.
#[derive(Clone)]
pub(crate) struct KeyRing {
    primary: HmacSha256,
    fallbacks: Vec<HmacSha256>,
}

impl KeyRing {
    pub(crate) fn new(primary: &Key, fallbacks: &[Key], cookie_name: &str) -> Self {
        let keyed = |key: &Key| {
            let mut mac =
                HmacSha256::new_from_slice(&key.0).expect("HMAC accepts keys of any length");
            mac.update(DOMAIN);
            // The name's length first, so that name and id cannot be shifted
            // into each other.
            mac.update(&(cookie_name.len() as u64).to_be_bytes());
            mac.update(cookie_name.as_bytes());
            mac
        };
        Self {
            primary: keyed(primary),
            fallbacks: fallbacks.iter().map(keyed).collect(),
        }
    }

    /// Returns the tag of `id` under the primary key.
    pub(crate) fn sign(&self, id: &Id) -> [u8; TAG_LEN] {
        let mut mac = self.primary.clone();
        mac.update(id.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Checks `tag` against every key, primary first, in constant time each.
    pub(crate) fn verify(&self, id: &Id, tag: &[u8]) -> Option<Verified> {
        let verifies = |mac: &HmacSha256| {
            let mut mac = mac.clone();
            mac.update(id.as_bytes());
            mac.verify_slice(tag).is_ok()
        };
        if verifies(&self.primary) {
            Some(Verified::Primary)
        } else if self.fallbacks.iter().any(verifies) {
            Some(Verified::Fallback)
        } else {
            None
        }
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("fallbacks", &self.fallbacks.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key::from_bytes(&[byte; 32]).expect("32 bytes")
    }

    #[test]
    fn short_keys_are_refused() {
        let error = Key::from_bytes(&[1; 31]).expect_err("31 bytes");
        assert_eq!(error.kind(), ErrorKind::Key);
        assert!(Key::try_from(&[1; 32][..]).is_ok());
    }

    #[test]
    fn a_cookie_key_converts_with_its_master_bytes() {
        let jar_key = cookie::Key::from(&[7; 64]);
        let key = Key::from(&jar_key);
        assert_eq!(&*key.0, &[7; 64][..]);
        assert!(key.0.len() >= Key::MIN_LEN);
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", key(0x41)), "Key(REDACTED)");
    }

    #[test]
    fn primary_signs_and_fallbacks_only_verify() {
        let id = Id::from_bytes([9; 16]);
        let old = KeyRing::new(&key(1), &[], "id");
        let rotated = KeyRing::new(&key(2), &[key(1)], "id");
        let old_tag = old.sign(&id);
        assert_eq!(rotated.verify(&id, &old_tag), Some(Verified::Fallback));
        let new_tag = rotated.sign(&id);
        assert_ne!(new_tag, old_tag, "the primary key, not the fallback, signs");
        assert_eq!(rotated.verify(&id, &new_tag), Some(Verified::Primary));
        assert_eq!(old.verify(&id, &new_tag), None);
    }

    #[test]
    fn the_cookie_name_is_bound_into_the_tag() {
        let id = Id::from_bytes([9; 16]);
        let tag = KeyRing::new(&key(1), &[], "id").sign(&id);
        assert_eq!(KeyRing::new(&key(1), &[], "other").verify(&id, &tag), None);
        assert_eq!(
            KeyRing::new(&key(1), &[], "id").verify(&id, &tag[..31]),
            None
        );
    }
}
