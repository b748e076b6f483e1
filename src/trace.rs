//! Tracing hooks that compile to nothing without the `tracing` feature.
//!
//! Events never carry a session id, a cookie value or a key: at most a salted
//! hash of the id ([`Fingerprint`]), whose salt is drawn once per process.

/// Emits a `tracing` event when the `tracing` feature is on.
macro_rules! event {
    ($level:ident, $($arg:tt)+) => {
        #[cfg(feature = "tracing")]
        ::tracing::$level!($($arg)+);
    };
}

pub(crate) use event;

#[cfg(feature = "tracing")]
pub(crate) use self::fingerprint::{Chain, Fingerprint};

#[cfg(feature = "tracing")]
mod fingerprint {
    use std::fmt;
    use std::sync::OnceLock;

    use sha2::{Digest, Sha256};

    use crate::id::Id;

    /// Displays a short salted hash of an id: enough to follow one session
    /// through the logs, useless for taking it over.
    pub(crate) struct Fingerprint<'a>(pub(crate) &'a Id);

    fn salt() -> &'static [u8; 16] {
        static SALT: OnceLock<[u8; 16]> = OnceLock::new();
        SALT.get_or_init(|| {
            let mut salt = [0; 16];
            // Without an OS RNG no id can be generated either; a fixed salt
            // then only weakens the hash of ids that cannot exist.
            let _ = getrandom::fill(&mut salt);
            salt
        })
    }

    /// Displays an error followed by its sources, so a log line says why a
    /// store failed, not only that it did.
    pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

    impl fmt::Display for Chain<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}", self.0)?;
            let mut source = self.0.source();
            while let Some(error) = source {
                write!(f, ": {error}")?;
                source = error.source();
            }
            Ok(())
        }
    }

    impl fmt::Display for Fingerprint<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let digest = Sha256::new()
                .chain_update(salt())
                .chain_update(self.0.as_bytes())
                .finalize();
            digest
                .iter()
                .take(6)
                .try_for_each(|byte| write!(f, "{byte:02x}"))
        }
    }
}

/// Runs `future` inside a span named `name`, with the `tracing` feature.
macro_rules! in_span {
    ($name:literal, $future:expr) => {{
        #[cfg(feature = "tracing")]
        let future = ::tracing::Instrument::instrument($future, ::tracing::debug_span!($name));
        #[cfg(not(feature = "tracing"))]
        let future = $future;
        future
    }};
}

pub(crate) use in_span;
