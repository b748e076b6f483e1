//! A real PostgreSQL server for the tests, started from the system's
//! binaries in a temporary directory.
//!
//! [`PgServer::start`] runs `initdb` into a fresh directory and starts the
//! server with `pg_ctl` on a free port of 127.0.0.1 (and a Unix socket in the
//! same directory), with `trust` authentication for the `postgres` user.
//! PostgreSQL refuses to run as root, so when the tests run as root the
//! server runs as the system user `sessionlayer`, created with `useradd` if
//! it does not exist.
//!
//! Each server also starts a small watchdog shell in its own process group.
//! It waits for the test process to end, however it ends, then stops the
//! server and removes its directory, so that a server kept in a `static`
//! (whose `Drop` never runs) does not outlive the test binary.
//!
//! The binaries are looked up in `PATH`, then in Debian's
//! `/usr/lib/postgresql/<version>/bin` (the newest version). Without them the
//! tests fail, naming the package to install.

// A helper that cannot give a test what it needs fails that test.
#![allow(clippy::panic)]

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use session_layer::PostgresStore;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{TempDir, unique_name};

/// The system user the server runs as when the tests run as root.
const SERVER_USER: &str = "sessionlayer";

/// A PostgreSQL server owned by the test process.
#[derive(Debug)]
pub(crate) struct PgServer {
    bin: PathBuf,
    /// Holds `data/` (the cluster), `postgres.log` and the Unix socket.
    root: PathBuf,
    port: u16,
    /// The user the server runs as, when the tests run as root.
    user: Option<String>,
    watchdog: Mutex<Option<Child>>,
}

/// Returns the server shared by the tests, starting it on
/// first use. It is stopped when the test process ends.
pub(crate) fn shared() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(PgServer::start)
}

/// Returns a store on the shared server, with a table of its own, migrated.
pub(crate) async fn store() -> PostgresStore {
    let pool = shared().pool(4).await;
    let store = PostgresStore::builder()
        .table_name(unique_name("t"))
        .build(pool)
        .expect("a valid table name");
    store.migrate().await.expect("migrate");
    store
}

impl PgServer {
    /// Initialises a cluster in a new temporary directory and starts it.
    ///
    /// # Panics
    ///
    /// Panics if the PostgreSQL binaries are missing (saying how to install
    /// them) or the server cannot be started (with its log).
    pub(crate) fn start() -> Self {
        let bin = find_binaries();
        let user = running_as_root().then(ensure_user);
        let root = TempDir::new("session_layer_pg").into_path();
        if let Some(user) = &user {
            run(Command::new("chown").arg(user).arg(&root), "chown");
        }
        let server = Self {
            bin,
            root,
            port: free_port(),
            user,
            watchdog: Mutex::new(None),
        };
        server.spawn_watchdog();
        let initdb = server
            .command("initdb")
            .arg("--pgdata")
            .arg(server.data_dir())
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8"])
            .args(["--locale=C", "--no-sync"])
            .output();
        check(initdb, "initdb", None);
        server.write_config();
        server.start_again();
        server
    }

    /// Returns the URL of the `postgres` database, over TCP on 127.0.0.1.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Returns a pool of at most `connections` connections that waits at
    /// most two seconds for one.
    pub(crate) async fn pool(&self, connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(2))
            .connect(&self.url())
            .await
            .unwrap_or_else(|error| panic!("cannot connect to the test server: {error}"))
    }

    /// Starts the server (again) on the same port, and waits until it
    /// accepts connections.
    pub(crate) fn start_again(&self) {
        let output = self
            .command("pg_ctl")
            .arg("start")
            .arg("--pgdata")
            .arg(self.data_dir())
            .arg("--log")
            .arg(self.log_file())
            .args(["--wait", "--timeout=60"])
            .output();
        check(output, "pg_ctl start", Some(&self.log_file()));
    }

    /// Stops the server at once, as a crash would (`-m immediate`): open
    /// connections break, and the next start recovers from the WAL.
    pub(crate) fn stop(&self) {
        let output = self
            .command("pg_ctl")
            .arg("stop")
            .arg("--pgdata")
            .arg(self.data_dir())
            .args(["--mode=immediate", "--wait"])
            .output();
        check(output, "pg_ctl stop", Some(&self.log_file()));
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// Returns a command running the PostgreSQL program `program` as the
    /// server's user.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        }
    }

    /// Listens on 127.0.0.1 only, with the socket in the server's own
    /// directory. Durability is turned down (`fsync = off`): the tests stop
    /// the server but never the machine, and the operating system still
    /// holds every committed write.
    fn write_config(&self) {
        let config = format!(
            "\n# session-layer tests\n\
             listen_addresses = '127.0.0.1'\n\
             port = {}\n\
             unix_socket_directories = '{}'\n\
             max_connections = 200\n\
             fsync = off\n\
             full_page_writes = off\n",
            self.port,
            self.root.display()
        );
        let path = self.data_dir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        text.push_str(&config);
        std::fs::write(&path, text)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    }

    /// Starts a shell that waits for this process to end, then stops the
    /// server and removes its directory.
    fn spawn_watchdog(&self) {
        const SCRIPT: &str = r#"
            while kill -0 "$0" 2>/dev/null; do sleep 0.2; done
            if [ -n "$4" ]; then
                runuser -u "$4" -- "$1" stop --pgdata "$2" --mode=immediate --wait
            else
                "$1" stop --pgdata "$2" --mode=immediate --wait
            fi
            rm -rf "$3"
        "#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg(std::process::id().to_string())
            .arg(self.bin.join("pg_ctl"))
            .arg(self.data_dir())
            .arg(&self.root)
            .arg(self.user.as_deref().unwrap_or(""))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C to the tests does not stop
            // the cleanup.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start the watchdog shell: {error}"));
        *self.watchdog.lock().unwrap_or_else(PoisonError::into_inner) = Some(child);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("stop")
            .arg("--pgdata")
            .arg(self.data_dir())
            .args(["--mode=immediate", "--wait"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let watchdog = self
            .watchdog
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut watchdog) = watchdog {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Returns the directory holding `initdb` and `pg_ctl`.
fn find_binaries() -> PathBuf {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let from_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(dir) = from_path.into_iter().find(|dir| has_both(dir)) {
        return dir;
    }
    // Debian and Ubuntu: /usr/lib/postgresql/<major>/bin; take the newest.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, dir)) => dir,
        None => panic!(
            "the PostgreSQL tests need a PostgreSQL server's binaries (`initdb`, `pg_ctl`), \
             found neither in PATH nor in /usr/lib/postgresql/<version>/bin: \
             install them with `apt-get install postgresql`"
        ),
    }
}

fn running_as_root() -> bool {
    let output = Command::new("id").arg("-u").output().expect("`id -u` runs");
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

/// Returns the server user, creating it if it does not exist.
fn ensure_user() -> String {
    let exists = || {
        Command::new("id")
            .arg(SERVER_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if !exists() {
        let created = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(SERVER_USER)
            .output();
        // Another test (or test process) may have created it meanwhile: check
        // again.
        if !exists() {
            check(created, "useradd", None);
            assert!(exists(), "useradd did not create the user {SERVER_USER}");
        }
    }
    SERVER_USER.to_owned()
}

/// Returns a port of 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("a bound address").port()
}

fn run(command: &mut Command, what: &str) {
    check(command.output(), what, None);
}

/// Panics with everything that explains it if `output` is a failure.
fn check(output: std::io::Result<Output>, what: &str, log: Option<&Path>) {
    let output = output.unwrap_or_else(|error| panic!("cannot run {what}: {error}"));
    if output.status.success() {
        return;
    }
    let log = log
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    panic!(
        "{what} failed ({}):\n{}\n{}\n{log}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
