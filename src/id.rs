//! Session ids: generation, encoding and a `Debug` that keeps them secret.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, ErrorKind};

/// The number of random bytes in a session id (128 bits).
pub(crate) const ID_LEN: usize = 16;

/// The length of an id's text form ([`Id::expose`]): unpadded base64 of
/// [`ID_LEN`] bytes.
#[cfg(feature = "redis-store")]
pub(crate) const ID_TEXT_LEN: usize = 22;

/// A session id: 128 bits from the operating system's CSPRNG.
///
/// The id is the session's bearer secret, so its `Debug` output is redacted.
/// Stores that need it as a key call [`Id::expose`] (text) or
/// [`Id::as_bytes`] (raw bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Id([u8; ID_LEN]);

impl Id {
    /// Returns a new random id.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Random`] only if the operating system's random
    /// number generator is unavailable.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = [0; ID_LEN];
        getrandom::fill(&mut bytes).map_err(|error| Error::new(ErrorKind::Random, error))?;
        Ok(Self(bytes))
    }

    /// Creates an id from its raw bytes, as a store read them back.
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }

    /// Returns the raw bytes of the id.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// Returns the id as 22 characters of unpadded URL-safe base64.
    ///
    /// This is the secret itself: use it as a store key, never in a log line.
    pub fn expose(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Returns the text of [`Id::expose`] without allocating (the Redis
    /// store's keys).
    #[cfg(feature = "redis-store")]
    pub(crate) fn text(&self) -> [u8; ID_TEXT_LEN] {
        let mut text = [0; ID_TEXT_LEN];
        URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut text)
            .expect("16 bytes encode to exactly 22 characters");
        text
    }

    /// Parses the text form returned by [`Id::expose`].
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Deserialize`] if `text` is not exactly the
    /// canonical encoding of 16 bytes.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut bytes = [0; ID_LEN];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(ID_LEN) if text.len() == 22 => Ok(Self(bytes)),
            _ => Err(Error::message(
                ErrorKind::Deserialize,
                "malformed session id",
            )),
        }
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Id(REDACTED)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_differ_and_round_trip() {
        let a = Id::generate().expect("os rng");
        let b = Id::generate().expect("os rng");
        assert_ne!(a, b);
        assert_eq!(Id::parse(&a.expose()).expect("canonical"), a);
        assert_eq!(Id::from_bytes(*a.as_bytes()), a);
    }

    #[cfg(feature = "redis-store")]
    #[test]
    fn text_is_the_exposed_form() {
        let random = Id::generate().expect("os rng");
        for id in [
            random,
            Id::from_bytes([0; ID_LEN]),
            Id::from_bytes([0xff; ID_LEN]),
        ] {
            assert_eq!(id.text(), id.expose().as_bytes());
        }
    }

    #[test]
    fn debug_hides_the_bytes() {
        let id = Id::from_bytes([0xab; ID_LEN]);
        let debug = format!("{id:?}");
        assert_eq!(debug, "Id(REDACTED)");
        assert!(!debug.contains(&id.expose()));
    }

    #[test]
    fn parse_refuses_non_canonical_text() {
        let id = Id::from_bytes([7; ID_LEN]).expose();
        assert!(Id::parse(&format!("{id}==")).is_err());
        assert!(Id::parse(&id[..21]).is_err());
        assert!(Id::parse("").is_err());
        // 22 characters whose last one carries bits beyond the 16 bytes.
        let mut tweaked = id.into_bytes();
        tweaked[21] = b'B';
        assert!(Id::parse(std::str::from_utf8(&tweaked).expect("ascii")).is_err());
    }
}
