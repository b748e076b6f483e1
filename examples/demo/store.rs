//! Picks the demo's session store from a URL (`--store` or
//! `SESSION_STORE_URL`) by its scheme.
//!
//! | URL | store | feature |
//! |---|---|---|
//! | none, `memory` | `MemoryStore` | `memory-store` (default) |
//! | `redis://…`, `rediss://…` | `RedisStore` | `redis-store` |
//! | `postgres://…`, `postgresql://…` | `PostgresStore` | `postgres-store` |
//! | `sqlite:…` | `SqliteStore` | `sqlite-store` |

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use session_layer::{MemoryStore, SessionStore};

/// A store ready for the session layer.
pub(crate) struct Opened {
    pub(crate) store: Arc<dyn SessionStore>,
    /// Which store, and where, without any password.
    pub(crate) description: String,
    /// Kept alive as long as the store is used (the SQL stores' cleanup task).
    pub(crate) _guard: Option<Box<dyn Any + Send>>,
}

/// Why no store could be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The URL's scheme names no store.
    UnknownScheme(String),
    /// The store exists, but the example was built without its feature.
    #[cfg_attr(
        all(
            feature = "redis-store",
            feature = "postgres-store",
            feature = "sqlite-store"
        ),
        allow(dead_code, reason = "every store's feature is on")
    )]
    FeatureOff {
        store: &'static str,
        feature: &'static str,
    },
    /// The store refused to open (unreachable server, bad URL, …).
    #[cfg_attr(
        not(any(
            feature = "redis-store",
            feature = "postgres-store",
            feature = "sqlite-store"
        )),
        allow(
            dead_code,
            reason = "only the stores behind a feature can fail to open"
        )
    )]
    Store {
        store: &'static str,
        error: session_layer::Error,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownScheme(scheme) => write!(
                f,
                "unknown store `{scheme}`: use memory, redis://…, postgres://… or sqlite:…"
            ),
            Self::FeatureOff { store, feature } => write!(
                f,
                "store {store} needs the `{feature}` feature: \
                 cargo run --example demo --features {feature} -- --store URL"
            ),
            Self::Store { store, error } => {
                write!(f, "cannot open the {store} store: {error}")?;
                // The causes, each once: some wrap an error and repeat its text.
                let mut last = String::new();
                let mut source = std::error::Error::source(error);
                while let Some(cause) = source {
                    let text = cause.to_string();
                    if text != last {
                        write!(f, ": {text}")?;
                    }
                    last = text;
                    source = cause.source();
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for OpenError {}

/// Opens the store that `url` names; no URL means the memory store.
///
/// # Errors
///
/// Fails on an unknown scheme, a store whose feature is off, or a store that
/// cannot be reached.
pub(crate) async fn open(url: Option<&str>) -> Result<Opened, OpenError> {
    let Some(url) = url.map(str::trim).filter(|url| !url.is_empty()) else {
        return Ok(memory());
    };
    let scheme = url
        .split_once(':')
        .map_or(url, |(scheme, _)| scheme)
        .to_ascii_lowercase();
    match scheme.as_str() {
        "memory" => Ok(memory()),
        "redis" | "rediss" => redis(url).await,
        "postgres" | "postgresql" => postgres(url).await,
        "sqlite" => sqlite(url).await,
        _ => Err(OpenError::UnknownScheme(scheme)),
    }
}

fn memory() -> Opened {
    Opened {
        store: Arc::new(MemoryStore::default()),
        description: "MemoryStore, in this process".to_owned(),
        _guard: None,
    }
}

#[cfg(feature = "redis-store")]
async fn redis(url: &str) -> Result<Opened, OpenError> {
    let store = session_layer::RedisStore::connect(url)
        .await
        .map_err(|error| OpenError::Store {
            store: "Redis",
            error,
        })?;
    Ok(Opened {
        store: Arc::new(store),
        description: format!("RedisStore at {}", redact(url)),
        _guard: None,
    })
}

#[cfg(not(feature = "redis-store"))]
async fn redis(_url: &str) -> Result<Opened, OpenError> {
    Err(OpenError::FeatureOff {
        store: "Redis",
        feature: "redis-store",
    })
}

/// How often the SQL stores delete expired sessions.
#[cfg(any(feature = "postgres-store", feature = "sqlite-store"))]
const CLEANUP_PERIOD: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Creates the table of a connected SQL store and starts its cleanup task.
#[cfg(any(feature = "postgres-store", feature = "sqlite-store"))]
async fn sql<DB: session_layer::Dialect>(
    connected: Result<session_layer::SqlStore<DB>, session_layer::Error>,
    store: &'static str,
    description: String,
) -> Result<Opened, OpenError> {
    let fail = |error| OpenError::Store { store, error };
    let store = connected.map_err(fail)?;
    store.migrate().await.map_err(fail)?;
    let cleanup = store.spawn_cleanup(CLEANUP_PERIOD);
    Ok(Opened {
        store: Arc::new(store),
        description,
        _guard: Some(Box::new(cleanup)),
    })
}

#[cfg(feature = "postgres-store")]
async fn postgres(url: &str) -> Result<Opened, OpenError> {
    let connected = session_layer::PostgresStore::connect(url).await;
    let description = format!("PostgresStore at {}", redact(url));
    sql(connected, "PostgreSQL", description).await
}

#[cfg(not(feature = "postgres-store"))]
async fn postgres(_url: &str) -> Result<Opened, OpenError> {
    Err(OpenError::FeatureOff {
        store: "PostgreSQL",
        feature: "postgres-store",
    })
}

#[cfg(feature = "sqlite-store")]
async fn sqlite(url: &str) -> Result<Opened, OpenError> {
    let connected = session_layer::SqliteStore::connect(url).await;
    let description = format!("SqliteStore at {}", redact(url));
    sql(connected, "SQLite", description).await
}

#[cfg(not(feature = "sqlite-store"))]
async fn sqlite(_url: &str) -> Result<Opened, OpenError> {
    Err(OpenError::FeatureOff {
        store: "SQLite",
        feature: "sqlite-store",
    })
}

/// Returns `url` fit for printing: no user name or password, no query
/// string (which may carry a password too).
#[cfg_attr(
    not(any(
        feature = "redis-store",
        feature = "postgres-store",
        feature = "sqlite-store"
    )),
    allow(
        dead_code,
        reason = "only the stores behind a feature have URLs to print"
    )
)]
fn redact(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{path}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_url_or_memory_means_the_memory_store() {
        for url in [None, Some(""), Some("memory"), Some("MEMORY:")] {
            let opened = open(url).await.expect("the memory store opens");
            assert!(opened.description.starts_with("MemoryStore"));
        }
    }

    #[tokio::test]
    async fn unknown_schemes_are_refused() {
        let error = open(Some("mysql://db")).await.err().expect("refused");
        assert_eq!(
            error.to_string(),
            "unknown store `mysql`: use memory, redis://…, postgres://… or sqlite:…"
        );
    }

    #[cfg(not(feature = "redis-store"))]
    #[tokio::test]
    async fn a_store_without_its_feature_names_the_feature() {
        let error = open(Some("redis://127.0.0.1"))
            .await
            .err()
            .expect("refused");
        assert!(
            error
                .to_string()
                .starts_with("store Redis needs the `redis-store` feature"),
            "{error}"
        );
    }

    #[test]
    fn printed_urls_carry_no_secrets() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/app?password=x"),
            "postgres://***@db:5432/app"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("sqlite:sessions.db?mode=rwc"), "sqlite:sessions.db");
    }
}
