//! The integration tests, in one binary (one link of axum, sqlx, redis and
//! fantoccini instead of one per file). Each module tests one concept;
//! [`support`] holds the tools they share. The store modules need their
//! store's feature: `./scripts/test` (`cargo test --all-features`) runs them
//! all, against real servers it starts on 127.0.0.1.

mod support;

/// The demo app (`examples/demo/app.rs`), tested by `browser` and
/// `demo_pages`.
#[path = "../../examples/demo/app.rs"]
mod demo_app;

mod browser;
mod chaos;
mod concurrency;
mod cookies;
mod demo_pages;
mod failures;
mod floods;
mod http;
mod key_rotation;
mod lifetime;
#[cfg(feature = "conformance")]
mod memory_store;
#[cfg(feature = "postgres-store")]
mod postgres;
#[cfg(feature = "postgres-store")]
mod postgres_outage;
mod proptest_codec;
mod provided_rotate;
mod readme;
#[cfg(all(feature = "redis-store", feature = "conformance"))]
mod redis_cluster;
#[cfg(feature = "redis-store")]
mod redis_http;
#[cfg(all(feature = "redis-store", feature = "conformance"))]
mod redis_store;
mod rotation;
#[cfg(feature = "sqlite-store")]
mod sqlite;
#[cfg(feature = "tracing")]
mod tracing;
