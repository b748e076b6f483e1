//! [`RedisStore`]: sessions in Redis, shared by every instance of an app.
//!
//! One key per session, `{prefix}{id}`, holding one binary string (see
//! [`record`] for the layout) whose native TTL is the record's deadline, so
//! Redis expires sessions by itself. Every command touches exactly one key,
//! so the store runs unchanged on Redis Cluster.
//!
//! | store call | commands | round trips |
//! |---|---|---|
//! | `load` | `GET` | 1 |
//! | `create` | `SET key value NX PXAT deadline` | 1 |
//! | `update` | `EVALSHA` of a compare-and-set script (`GETRANGE`, `SET … PXAT`) | 1 |
//! | `delete` | `DEL` | 1 |
//! | `rotate` with a retired record | `SET new … NX PXAT`, then `EVALSHA` of the compare-and-set script on the old key (`GETRANGE`, `SET old retired PXAT …`) | 2 (3 when stale) |
//! | `rotate` without one | `SET new … NX PXAT`, then `EVALSHA` of a compare-and-delete script on the old key | 2 (3 when stale) |
//!
//! The first script call after Redis started (or flushed its script cache)
//! costs two more round trips: `EVALSHA` answers `NOSCRIPT`, the client sends
//! `SCRIPT LOAD` and runs `EVALSHA` again.

use std::fmt;
use std::future::Future;
use std::io::Write as _;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, RedisError, RedisWrite, Script, ToRedisArgs, Value};

use crate::error::{Error, ErrorKind};
use crate::id::{ID_TEXT_LEN, Id};
use crate::store::{Created, Record, Rotated, SessionStore, Updated};

mod record;

/// Replaces the record under `KEYS[1]` with `ARGV[2]`, expiring at
/// `ARGV[3]` (ms since the epoch), only if the stored value starts with the
/// expected header `ARGV[1]` (format tag and version). Returns 1 if it wrote,
/// 0 if the key is missing or holds another version. `update` runs it, and
/// so does `rotate` to leave the retired record under the old key.
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GETRANGE', KEYS[1], 0, #ARGV[1] - 1) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
  return 1
end
return 0",
    )
});

/// Deletes `KEYS[1]` only if its value starts with the header `ARGV[1]`.
/// Returns 1 if it deleted, 0 otherwise.
static DELETE_IF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GETRANGE', KEYS[1], 0, #ARGV[1] - 1) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0",
    )
});

/// A [`SessionStore`] on Redis or Redis Cluster: the store to share when an
/// app runs on more than one machine.
///
/// Every instance of the app opens its own `RedisStore` to the same Redis,
/// and they all see the same sessions; compare-and-set updates run inside
/// Redis, so no instance can overwrite another's save, and no increment made
/// with [`Session::update`](crate::Session::update) is lost.
///
/// - **Connection.** [`connect`](Self::connect) opens one multiplexed
///   connection through redis-rs's [`ConnectionManager`]: concurrent calls
///   are pipelined over it, so no pool is needed, and a lost connection is
///   re-established in the background with exponential backoff (100 ms
///   doubling to at most 1 s between attempts). While Redis is away, calls fail
///   (or time out) with an error; once it is back, the same store serves
///   again. [`connect_cluster`](Self::connect_cluster) does the same for a
///   Redis Cluster, following `MOVED` and `ASK` redirects.
/// - **Keys.** A session lives under `{prefix}{id}`: the prefix
///   ([`DEFAULT_PREFIX`](Self::DEFAULT_PREFIX) unless set with
///   [`RedisStoreBuilder::prefix`]) followed by the 22-character id of
///   [`Id::expose`]. The id alone is not a credential: a cookie also needs the
///   HMAC tag, which only the app's [`Key`](crate::Key) can make.
/// - **Expiry.** The key's TTL is the record's `expires_at` (`PXAT`), so Redis
///   removes idle and finished sessions itself; nothing needs sweeping.
/// - **Encoding.** One binary string per key: a 4-byte tag, the version,
///   creation time and deadline as big-endian `u64`s (milliseconds since the
///   Unix epoch), then the data, exactly as the layer gave it. A value that is
///   not in this format, or a key of another type, is an
///   [`ErrorKind::Deserialize`] error, never a panic.
/// - **Writes.** `create` is one `SET … NX PXAT`; `update` is one script that
///   compares the stored version and writes in the same step; `rotate`
///   creates the new key first, then replaces the old one with the retired
///   record (with the retired record's own TTL), or deletes it, only if it
///   still has the expected version (one script), and removes the new key
///   again if it does not. Each command touches a single key, so all of this
///   works on Redis Cluster, where the two ids of a rotation live in
///   different slots. No session is ever deleted before its replacement
///   exists.
/// - **Timeout.** Every store call, including its reconnect wait, is bounded
///   by [`timeout`](Self::timeout) ([`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)
///   unless set with [`RedisStoreBuilder::timeout`]). A call that runs
///   out of time fails with [`ErrorKind::Timeout`], which the layer answers
///   with `500` and no `Set-Cookie`, like any store error. A write that timed
///   out may still be applied once a slow Redis gets to it (the outcome of a
///   timed-out call is unknown, as with any network store), but every write
///   is a single atomic command, so a record is never half-written.
/// - **Requirements.** Redis 6.2 or later (for `PXAT`), and a Tokio runtime
///   with the time driver enabled (`#[tokio::main]` has it).
///
/// `RedisStore` is cheap to clone; clones share the connection.
///
/// # Why redis-rs
///
/// The [`redis`] crate is the most widely used Redis client for Rust, and it
/// has what a production session store needs without extra parts: a
/// multiplexed, self-reconnecting connection ([`ConnectionManager`]), an
/// async cluster client with slot routing and redirect handling, and script
/// calls by SHA with a fallback when the server lost its script cache. The
/// crate re-exports it as `session_layer::redis`, so the types in
/// [`new`](Self::new) and [`new_cluster`](Self::new_cluster) always match.
/// To reach Redis over TLS, enable one of its TLS features (for example
/// `redis = { version = "1.2", features = ["tokio-rustls-comp"] }` in your
/// `Cargo.toml`) and use a `rediss://` URL.
///
/// # Round trips
///
/// A request that only reads the session costs one round trip (`GET`); one
/// that changes it costs two (`GET`, then the compare-and-set script); a new
/// session costs one (`SET … NX`); a route that does not extract the session
/// costs none. A concurrent conflict adds one reload and one retry per lost
/// race.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
///
/// use axum::{Router, routing::get};
/// use session_layer::{Key, RedisStore, Session, SessionLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::builder()
///     .prefix("myapp:session:")
///     .timeout(Duration::from_millis(500))
///     .connect("redis://127.0.0.1:6379")
///     .await?;
/// let app: Router = Router::new()
///     .route("/", get(|session: Session| async move {
///         session.update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
///             .map(|n| n.to_string())
///     }))
///     .layer(SessionLayer::new(store, Key::generate()?));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    prefix: Arc<str>,
    timeout: Duration,
}

/// The two kinds of connection; both are cheap handles to shared state.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisStore {
    /// The key prefix unless [`RedisStoreBuilder::prefix`] sets another.
    pub const DEFAULT_PREFIX: &'static str = "session:";

    /// The time a store call may take unless [`RedisStoreBuilder::timeout`]
    /// sets another.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// The longest pause between two reconnection attempts of a connection
    /// opened by [`connect`](Self::connect).
    const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

    /// How long one attempt to open a connection may take.
    const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

    /// Starts a store with settings other than the defaults: the key
    /// [`prefix`](RedisStoreBuilder::prefix) and the per-call
    /// [`timeout`](RedisStoreBuilder::timeout).
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder {
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// Connects to one Redis server with the default prefix and timeout; the
    /// same as `RedisStore::builder().connect(url)`, see
    /// [`RedisStoreBuilder::connect`].
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Config`] if `url` is not a valid Redis URL, and
    /// with [`ErrorKind::Store`] if no connection could be opened after a few
    /// attempts (a few seconds).
    pub async fn connect(url: impl IntoConnectionInfo) -> Result<Self, Error> {
        Self::builder().connect(url).await
    }

    /// Connects to a Redis Cluster with the default prefix and timeout; the
    /// same as `RedisStore::builder().connect_cluster(nodes)`, see
    /// [`RedisStoreBuilder::connect_cluster`].
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Config`] if a URL is not valid, and with
    /// [`ErrorKind::Store`] if the cluster cannot be reached or reports no
    /// slot map.
    pub async fn connect_cluster<I>(nodes: I) -> Result<Self, Error>
    where
        I: IntoIterator,
        I::Item: IntoConnectionInfo,
    {
        Self::builder().connect_cluster(nodes).await
    }

    /// Wraps a connection you configured yourself (credentials, retries,
    /// TLS, RESP3), with the default prefix and timeout; for others, see
    /// [`RedisStoreBuilder::build`].
    ///
    /// Leave its response timeout longer than this store's
    /// [`timeout`](Self::timeout), or off, so that the store's timeout is the
    /// one that applies.
    #[must_use]
    pub fn new(connection: ConnectionManager) -> Self {
        Self::builder().assemble(Connection::Single(connection))
    }

    /// Wraps a Redis Cluster connection you configured yourself, with the
    /// default prefix and timeout; for others, see
    /// [`RedisStoreBuilder::build_cluster`].
    #[must_use]
    pub fn new_cluster(connection: ClusterConnection) -> Self {
        Self::builder().assemble(Connection::Cluster(connection))
    }

    /// Returns the prefix of every session key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Returns the time each store call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Returns the Redis key of a session: the prefix, then the id's text.
    fn key(&self, id: &Id) -> SessionKey<'_> {
        SessionKey {
            prefix: &self.prefix,
            id: id.text(),
        }
    }

    /// Runs `call` under the store's timeout, mapping its errors.
    ///
    /// Not an `async fn`: that would keep `call` twice in its state, once as
    /// the argument and once inside the timeout, and a store call's future
    /// (boxed once per call by `async_trait`) would grow past the size that
    /// the allocator serves from its fast lists.
    fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, Error>>,
    ) -> impl Future<Output = Result<T, Error>> {
        let bounded = tokio::time::timeout(self.timeout, call);
        async move {
            bounded
                .await
                .unwrap_or_else(|elapsed| Err(Error::new(ErrorKind::Timeout, elapsed)))
        }
    }

    /// Sends one command.
    async fn query(&self, cmd: &Cmd) -> Result<Value, Error> {
        self.send(cmd).await.map_err(redis_error)
    }

    async fn send(&self, cmd: &Cmd) -> Result<Value, RedisError> {
        match &self.connection {
            Connection::Single(connection) => cmd.query_async(&mut connection.clone()).await,
            Connection::Cluster(connection) => cmd.query_async(&mut connection.clone()).await,
        }
    }

    /// Runs one of the scripts on `key`, with `header` and then `args` as
    /// arguments; returns whether it acted.
    ///
    /// The `EVALSHA` command is built here rather than by redis-rs's
    /// `ScriptInvocation`, which copies every argument into a `Vec` of its
    /// own first. When Redis answers `NOSCRIPT` (after a restart or a
    /// `SCRIPT FLUSH`), the script is loaded and the call sent again.
    async fn script(
        &self,
        script: &Script,
        key: SessionKey<'_>,
        header: &[u8],
        args: impl ToRedisArgs,
    ) -> Result<bool, Error> {
        // Room for the name, the hash, the key, the header and the deadline;
        // a record reserves its own room as it is written.
        let mut cmd = Cmd::with_capacity(8, 160);
        cmd.arg("EVALSHA")
            .arg(script.get_hash())
            .arg(1)
            .arg(key)
            .arg(header)
            .arg(args);
        let reply = match self.send(&cmd).await {
            // Rare, so boxed: its state stays out of every call's future.
            Err(error) if error.code() == Some("NOSCRIPT") => {
                Box::pin(self.load_and_send(script, &cmd)).await?
            }
            reply => reply.map_err(redis_error)?,
        };
        Ok(matches!(reply, Value::Int(1)))
    }

    /// Loads `script` into Redis, then sends `cmd` again.
    async fn load_and_send(&self, script: &Script, cmd: &Cmd) -> Result<Value, Error> {
        let loaded = match &self.connection {
            Connection::Single(connection) => script.load_async(&mut connection.clone()).await,
            Connection::Cluster(connection) => script.load_async(&mut connection.clone()).await,
        };
        loaded.map_err(redis_error)?;
        self.query(cmd).await
    }

    /// Stores `record` under its id if the key is free.
    async fn set_if_absent(&self, record: &Record) -> Result<Created, Error> {
        let mut cmd = Cmd::with_capacity(6, 96);
        cmd.arg("SET")
            .arg(self.key(&record.id))
            .arg(Encoded(record))
            .arg("NX")
            .arg("PXAT")
            .arg(record::pxat(record.expires_at));
        match self.query(&cmd).await? {
            Value::Nil => Ok(Created::IdTaken),
            _ => Ok(Created::Created),
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection's own `Debug` may show credentials: leave it out.
        let connection = match self.connection {
            Connection::Single(_) => "single",
            Connection::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisStore")
            .field("connection", &connection)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Builds a [`RedisStore`] with a key prefix or a timeout of your choice:
/// `RedisStore::builder()`, then the setters, then one of
/// [`connect`](Self::connect), [`connect_cluster`](Self::connect_cluster),
/// [`build`](Self::build) or [`build_cluster`](Self::build_cluster).
///
/// Setters take the builder by value and return it; the settings are
/// checked once, by the call that finishes the builder, before any
/// connection is opened.
///
/// ```no_run
/// use std::time::Duration;
///
/// use session_layer::RedisStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), session_layer::Error> {
/// let store = RedisStore::builder()
///     .prefix("myapp:session:")
///     .timeout(Duration::from_millis(500))
///     .connect("redis://127.0.0.1:6379")
///     .await?;
/// assert_eq!(store.prefix(), "myapp:session:");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    prefix: String,
    timeout: Duration,
}

impl RedisStoreBuilder {
    /// Puts every session key under `prefix` (default
    /// [`RedisStore::DEFAULT_PREFIX`]), so that several apps (or several
    /// layers with different cookies) can share one Redis database.
    ///
    /// On Redis Cluster, a prefix with a hash tag (`{…}`) would put every
    /// session in one slot, on one node; leave braces out of it.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Bounds every store call by `timeout` (default
    /// [`RedisStore::DEFAULT_TIMEOUT`]): a call that has not finished by then
    /// fails with [`ErrorKind::Timeout`].
    ///
    /// It must be longer than zero, which would fail every call; the call
    /// that finishes the builder checks it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings, then connects to one Redis server (or a primary
    /// behind a proxy), for example `redis://127.0.0.1:6379`,
    /// `redis://:password@host/2` or, with a TLS feature of the `redis`
    /// crate, `rediss://host`.
    ///
    /// The connection reconnects by itself whenever it is lost: the first
    /// attempts follow each other quickly, later ones at most a second apart.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Config`] if the timeout is zero or `url` is
    /// not a valid Redis URL, and with [`ErrorKind::Store`] if no connection
    /// could be opened after a few attempts (a few seconds).
    pub async fn connect(self, url: impl IntoConnectionInfo) -> Result<RedisStore, Error> {
        self.check()?;
        let client = redis::Client::open(url).map_err(redis_error)?;
        // The store bounds each call itself, so the connection's own
        // response timeout is off: a slow answer must not be cut at 500 ms
        // when the store was configured to wait longer.
        let config = ConnectionManagerConfig::new()
            .set_max_delay(RedisStore::MAX_RECONNECT_DELAY)
            .set_connection_timeout(Some(RedisStore::CONNECTION_TIMEOUT))
            .set_response_timeout(None);
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(redis_error)?;
        Ok(self.assemble(Connection::Single(manager)))
    }

    /// Checks the settings, then connects to a Redis Cluster through any of
    /// its nodes, for example
    /// `["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]`.
    ///
    /// The client learns the slot map from the nodes, routes each command to
    /// the primary that owns its key, follows `MOVED` and `ASK` redirects,
    /// and reconnects to nodes that go away.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Config`] if the timeout is zero or a URL is
    /// not valid, and with [`ErrorKind::Store`] if the cluster cannot be
    /// reached or reports no slot map.
    pub async fn connect_cluster<I>(self, nodes: I) -> Result<RedisStore, Error>
    where
        I: IntoIterator,
        I::Item: IntoConnectionInfo,
    {
        self.check()?;
        let client = ClusterClient::builder(nodes)
            .connection_timeout(RedisStore::CONNECTION_TIMEOUT)
            .build()
            .map_err(redis_error)?;
        let connection = client.get_async_connection().await.map_err(redis_error)?;
        Ok(self.assemble(Connection::Cluster(connection)))
    }

    /// Checks the settings and wraps a connection you configured yourself
    /// (credentials, retries, TLS, RESP3).
    ///
    /// Leave its response timeout longer than the store's
    /// [`timeout`](Self::timeout), or off, so that the store's timeout is the
    /// one that applies.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Config`] if the timeout is zero.
    pub fn build(self, connection: ConnectionManager) -> Result<RedisStore, Error> {
        self.check()?;
        Ok(self.assemble(Connection::Single(connection)))
    }

    /// Checks the settings and wraps a Redis Cluster connection you
    /// configured yourself.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Config`] if the timeout is zero.
    pub fn build_cluster(self, connection: ClusterConnection) -> Result<RedisStore, Error> {
        self.check()?;
        Ok(self.assemble(Connection::Cluster(connection)))
    }

    /// Checks the settings.
    fn check(&self) -> Result<(), Error> {
        if self.timeout.is_zero() {
            return Err(Error::message(
                ErrorKind::Config,
                "the redis store's timeout must be longer than zero",
            ));
        }
        Ok(())
    }

    /// Returns the store, whose settings are checked (or are the defaults).
    fn assemble(self, connection: Connection) -> RedisStore {
        RedisStore {
            connection,
            prefix: Arc::from(self.prefix),
            timeout: self.timeout,
        }
    }
}

/// No further script arguments (`None` writes none).
const NO_ARGS: Option<&[u8]> = None;

/// A session's Redis key, written straight into a command's buffer.
#[derive(Clone, Copy)]
struct SessionKey<'a> {
    prefix: &'a str,
    id: [u8; ID_TEXT_LEN],
}

impl ToRedisArgs for SessionKey<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut arg = out.writer_for_next_arg();
        // The writer appends to the command's buffer: it cannot fail.
        let _ = arg.write_all(self.prefix.as_bytes());
        let _ = arg.write_all(&self.id);
    }
}

/// A record's value (see [`record`]), written straight into a command's
/// buffer.
struct Encoded<'a>(&'a Record);

impl ToRedisArgs for Encoded<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        out.reserve_space_for_args([record::len(self.0)]);
        record::write(self.0, &mut out.writer_for_next_arg());
    }
}

/// Maps a client error: a key of the wrong type is foreign data under a
/// session key, and so a decoding error; a bad URL is a configuration
/// error; everything else is a store error.
fn redis_error(error: RedisError) -> Error {
    let kind = match error.kind() {
        redis::ErrorKind::InvalidClientConfig => ErrorKind::Config,
        _ if error.code() == Some("WRONGTYPE") => ErrorKind::Deserialize,
        _ => ErrorKind::Store,
    };
    Error::new(kind, error)
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.bounded(async {
            let mut cmd = Cmd::with_capacity(2, 64);
            cmd.arg("GET").arg(self.key(id));
            let stored = match self.query(&cmd).await? {
                Value::Nil => return Ok(None),
                Value::BulkString(bytes) => bytes,
                _ => return Err(record::foreign()),
            };
            let record = record::decode(*id, &stored)?;
            // Redis expires the key by its own clock; the layer's clock is
            // the one that counts.
            Ok((record.expires_at > SystemTime::now()).then_some(record))
        })
        .await
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        self.bounded(self.set_if_absent(record)).await
    }

    async fn update(&self, record: &Record, expected_version: u64) -> Result<Updated, Error> {
        self.bounded(async {
            let written = self
                .script(
                    &UPDATE,
                    self.key(&record.id),
                    &record::header(expected_version),
                    (Encoded(record), record::pxat(record.expires_at)),
                )
                .await?;
            Ok(if written {
                Updated::Updated
            } else {
                Updated::Stale
            })
        })
        .await
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        self.bounded(async {
            let mut cmd = Cmd::with_capacity(2, 64);
            cmd.arg("DEL").arg(self.key(id));
            self.query(&cmd).await.map(drop)
        })
        .await
    }

    /// Creates the new key, then replaces the old one with `retired`
    /// (`SET … PXAT` its deadline, in the compare-and-set script that
    /// `update` runs) or deletes it, only if it still holds
    /// `expected_version`; if it does not, deletes the new key again and
    /// answers [`Rotated::Stale`].
    ///
    /// Every step touches one key, so rotation works on Redis Cluster. No
    /// write to the old id can be lost: the old key is replaced by a
    /// compare-and-set or deleted by a compare-and-delete, never blindly. The
    /// new key exists for a moment before the old one is replaced or gone,
    /// but nobody knows its id until the layer sends the cookie. If the
    /// connection fails between the steps, the session stays reachable under
    /// its old id, and the new key (known to nobody) expires with its TTL.
    async fn rotate(
        &self,
        old: &Id,
        expected_version: u64,
        record: &Record,
        retired: Option<&Record>,
    ) -> Result<Rotated, Error> {
        self.bounded(async {
            if self.set_if_absent(record).await? == Created::IdTaken {
                return Ok(Rotated::IdTaken);
            }
            let expected = record::header(expected_version);
            let moved = match retired {
                Some(retired) => {
                    let args = (Encoded(retired), record::pxat(retired.expires_at));
                    self.script(&UPDATE, self.key(old), &expected, args).await?
                }
                None => {
                    self.script(&DELETE_IF, self.key(old), &expected, NO_ARGS)
                        .await?
                }
            };
            if moved {
                return Ok(Rotated::Rotated);
            }
            // The old record is gone or was written meanwhile: undo the new
            // key (only if it is still the one just written) and let the
            // layer reload.
            self.script(
                &DELETE_IF,
                self.key(&record.id),
                &record::header(record.version),
                NO_ARGS,
            )
            .await?;
            Ok(Rotated::Stale)
        })
        .await
    }
}
