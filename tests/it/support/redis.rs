//! Real Redis servers for the Redis store's tests: one `redis-server` child
//! process per test (or three joined into a cluster) on free loopback ports,
//! without persistence, in a temporary directory, killed when dropped.
//!
//! The tests need `redis-server` and `redis-cli` on `PATH`; when they are
//! missing, the tests fail and say how to install them.

// A helper that cannot give a test what it needs fails that test.
#![allow(clippy::panic)]

use std::collections::BTreeMap;
use std::io::ErrorKind as IoErrorKind;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use session_layer::RedisStore;
use session_layer::redis::aio::MultiplexedConnection;

use super::{Keeps, TempDir, Wrapped};

const INSTALL_HINT: &str = "the Redis store's tests run a real Redis: install it with \
     `apt-get install redis-server` (it provides redis-server and redis-cli)";

/// How long a starting server has to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Returns a TCP port on 127.0.0.1 that nothing listens on right now.
///
/// Redis has no `--port 0`, so the port is found by binding a listener to
/// port 0, reading the port the system gave it, and closing it again.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("can bind a loopback port")
        .port()
}

/// One `redis-server` child process on a loopback port.
///
/// Dropping it kills the process and removes its directory. [`stop`] and
/// [`start_again`] take it down and bring it back on the same port and
/// directory, so a dump written by `SAVE` is loaded again.
///
/// [`stop`]: Self::stop
/// [`start_again`]: Self::start_again
#[derive(Debug)]
pub(crate) struct RedisServer {
    port: u16,
    extra: Vec<String>,
    child: Option<Child>,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a standalone server.
    pub(crate) async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra command-line options, retrying on another
    /// port if the chosen one was taken meanwhile.
    pub(crate) async fn start_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|&arg| arg.to_owned()).collect();
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                extra: extra.clone(),
                child: None,
                dir: TempDir::new("session_layer_redis"),
            };
            match server.spawn().await {
                Ok(()) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Returns `redis://127.0.0.1:{port}`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Opens a [`RedisStore`] on this server (the default prefix and
    /// timeout).
    pub(crate) async fn store(&self) -> RedisStore {
        RedisStore::connect(self.url())
            .await
            .expect("the store connects to the test server")
    }

    /// Opens a plain client connection, for looking at Redis behind the
    /// store's back.
    pub(crate) async fn client(&self) -> Raw {
        Raw::connect(&self.url()).await
    }

    /// Kills the server (after an optional `SAVE` by the caller).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory.
    pub(crate) async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        // The port was ours a moment ago; if the system hands it out in
        // between, the error says so.
        self.spawn()
            .await
            .unwrap_or_else(|error| panic!("redis-server did not restart: {error}"));
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let mut args = vec![
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ];
        args.extend(self.extra.iter().map(String::as_str));
        let child = spawn("redis-server", &args, self.dir.path());
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "redis-server on port {} exited with {status}",
                        self.port
                    ));
                }
            }
            if ping(self.port).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "redis-server on port {} did not answer PING within {START_TIMEOUT:?}",
                    self.port
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(program: &str, args: &[&str], dir: &Path) -> Child {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| {
            if error.kind() == IoErrorKind::NotFound {
                panic!("`{program}` is not on PATH; {INSTALL_HINT}");
            }
            panic!("cannot start `{program}`: {error}");
        })
}

/// Returns whether a server on `port` answers `PING` with `PONG`.
async fn ping(port: u16) -> bool {
    let Ok(client) = session_layer::redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
        return false;
    };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    session_layer::redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .is_ok_and(|pong| pong == "PONG")
}

/// A plain connection to one server, with the few commands the tests use to
/// look at Redis directly.
pub(crate) struct Raw(MultiplexedConnection);

impl Raw {
    pub(crate) async fn connect(url: &str) -> Self {
        let client = session_layer::redis::Client::open(url).expect("a valid URL");
        Self(
            client
                .get_multiplexed_async_connection()
                .await
                .expect("a raw connection to the test server"),
        )
    }

    /// Runs one command and converts its answer.
    pub(crate) async fn run<T: session_layer::redis::FromRedisValue>(
        &mut self,
        args: &[&[u8]],
    ) -> T {
        let mut cmd = session_layer::redis::Cmd::new();
        for arg in args {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut self.0)
            .await
            .unwrap_or_else(|error| panic!("raw command {:?} failed: {error}", first(args)))
    }

    pub(crate) async fn exists(&mut self, key: &str) -> bool {
        self.run::<i64>(&[b"EXISTS", key.as_bytes()]).await == 1
    }

    /// Returns the key's time to live in milliseconds (-2 if it does not
    /// exist, -1 if it never expires).
    pub(crate) async fn pttl(&mut self, key: &str) -> i64 {
        self.run(&[b"PTTL", key.as_bytes()]).await
    }

    pub(crate) async fn dbsize(&mut self) -> i64 {
        self.run(&[b"DBSIZE"]).await
    }

    /// Returns the calls per command since the last `CONFIG RESETSTAT`,
    /// from `INFO commandstats`, leaving out the commands this raw client
    /// sends itself.
    pub(crate) async fn command_calls(&mut self) -> BTreeMap<String, u64> {
        let info: String = self.run(&[b"INFO", b"commandstats"]).await;
        info.lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats
                    .split(',')
                    .find_map(|field| field.strip_prefix("calls="))?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .filter(|(name, _)| !matches!(name.as_str(), "info" | "config|resetstat"))
            .collect()
    }

    pub(crate) async fn reset_stats(&mut self) {
        self.run::<()>(&[b"CONFIG", b"RESETSTAT"]).await;
    }
}

fn first(args: &[&[u8]]) -> String {
    args.first()
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .unwrap_or_default()
}

/// A Redis Cluster of three primaries (no replicas) on loopback ports,
/// created with `redis-cli --cluster create`.
#[derive(Debug)]
pub(crate) struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub(crate) async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let bus_port = free_port().to_string();
            nodes.push(
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    "--cluster-port",
                    &bus_port,
                ])
                .await,
            );
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let output = tokio::process::Command::new("redis-cli")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|error| {
                if error.kind() == IoErrorKind::NotFound {
                    panic!("`redis-cli` is not on PATH; {INSTALL_HINT}");
                }
                panic!("cannot run `redis-cli`: {error}");
            });
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self { nodes };
        cluster.wait_until_ok().await;
        cluster
    }

    /// Returns the URL of every node.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Waits until every node reports `cluster_state:ok`.
    async fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &self.nodes {
            let mut client = node.client().await;
            loop {
                let info: String = client.run(&[b"CLUSTER", b"INFO"]).await;
                if info.lines().any(|line| line.trim() == "cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not reach cluster_state:ok: {info}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A [`RedisStore`] together with the server it talks to, so that the
/// conformance macro's per-test store also owns (and stops) its server.
/// Every call goes straight to the real store.
pub(crate) type ServedStore = Wrapped<RedisStore, Keeps<RedisServer>>;

impl ServedStore {
    pub(crate) async fn start() -> Self {
        let server = RedisServer::start().await;
        Self::with_hook(server.store().await, Keeps(server))
    }
}
