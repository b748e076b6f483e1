//! Support for the browser tests: chromedriver, headless Chromium sessions
//! driven through WebDriver, and the app under test served in-process.
//!
//! - [`Driver`] runs Debian's `chromedriver` on a free loopback port. Tests
//!   that run at the same time share one; the last one out kills it.
//! - [`Browser`] is one WebDriver session: a headless Chromium with a fresh
//!   profile of its own, so two browsers share no cookies.
//! - [`Server`] serves an axum app on `127.0.0.1:0` and logs the status of
//!   every response, so a test can check what the browser was answered.
//! - [`browser_test`] ties them together and closes the browsers even when
//!   the test fails, so no Chromium outlives its test.

// Test support: a failed step fails the test, with a message that says what
// the browser or the driver did.
#![allow(clippy::panic, reason = "test support fails the test by panicking")]

use std::fs::{self, File};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use fantoccini::cookies::Cookie;
use fantoccini::elements::Element;
use fantoccini::wd::WindowHandle;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// Debian's Chromium (package `chromium`).
pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";

/// Debian's chromedriver (package `chromium-driver`).
pub(crate) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The longest wait for anything: a page, an element, a process.
const WAIT: Duration = Duration::from_secs(15);

/// The longest a whole browser test may take.
const TEST_LIMIT: Duration = Duration::from_secs(60);

/// How often a condition is checked again while waiting for it.
const POLL: Duration = Duration::from_millis(20);

/// Where the tests leave what they write: profiles, logs, screenshots.
pub(crate) fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    fs::create_dir_all(&dir).expect("the scratch directory can be created");
    dir
}

/// Runs `test` with a server for `app` and `N` fresh browsers, then closes
/// the browsers, whether the test passed or panicked, and checks that the
/// server answered no request with an error (a missing favicon aside).
pub(crate) async fn browser_test<const N: usize, F, Fut>(app: Router, test: F)
where
    F: FnOnce(Server, [Browser; N]) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let server = Server::start(app).await;
    let mut browsers = Vec::with_capacity(N);
    for _ in 0..N {
        match Browser::open(&server).await {
            Ok(browser) => browsers.push(browser),
            Err(error) => {
                close(browsers.iter().map(|b| b.client.clone())).await;
                drop(browsers);
                panic!("{error}");
            }
        }
    }
    // Kept here, so the profiles and chromedriver outlive the test's task
    // until the browsers are closed.
    let keep = browsers.clone();
    let Ok(browsers) = <[Browser; N]>::try_from(browsers) else {
        unreachable!("exactly N browsers were opened");
    };
    // The test runs in its own task so that a failed assertion comes back
    // here as an error, after which the browsers are still closed.
    let outcome = tokio::time::timeout(TEST_LIMIT, tokio::spawn(test(server.clone(), browsers)));
    let outcome = outcome.await;
    close(keep.iter().map(|b| b.client.clone())).await;
    if !matches!(outcome, Ok(Ok(()))) {
        KEEP_LOGS.store(true, Ordering::Relaxed);
        if let Some(browser) = keep.first() {
            eprintln!(
                "chromedriver's log: {}",
                browser.profile.driver.log.display()
            );
        }
    }
    drop(keep);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => std::panic::resume_unwind(error.into_panic()),
        Err(_) => panic!("the browser test took longer than {TEST_LIMIT:?}"),
    }
    server.assert_no_errors();
}

/// Ends the WebDriver sessions, which makes chromedriver quit their browsers.
async fn close(clients: impl IntoIterator<Item = Client>) {
    for client in clients {
        let _ = tokio::time::timeout(WAIT, client.close()).await;
    }
}

// ---------------------------------------------------------------------------
// chromedriver

/// Set when a test fails, so chromedriver's log is kept for a look.
static KEEP_LOGS: AtomicBool = AtomicBool::new(false);

/// A running chromedriver, listening on loopback only, killed on drop.
#[derive(Debug)]
pub(crate) struct Driver {
    child: Child,
    url: String,
    /// chromedriver's output, kept if a test fails.
    log: PathBuf,
}

impl Driver {
    /// Returns the chromedriver that the tests running now share, starting
    /// one if there is none.
    pub(crate) fn shared() -> Arc<Self> {
        static SHARED: Mutex<Weak<Driver>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(driver) = shared.upgrade() {
            return driver;
        }
        let driver = Arc::new(Self::start());
        *shared = Arc::downgrade(&driver);
        driver
    }

    fn start() -> Self {
        require_browser();
        let mut failures = Vec::new();
        // A port found free can be taken before chromedriver binds it:
        // then chromedriver exits, and another port is tried.
        for _ in 0..3 {
            let port = free_port();
            let log_path = scratch_dir().join(format!("chromedriver-{port}.log"));
            let log = File::create(&log_path).expect("the chromedriver log can be created");
            let mut child = Command::new(CHROMEDRIVER)
                // chromedriver binds loopback only and accepts local
                // connections only, unless told otherwise.
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("the log file handle can be cloned"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|error| {
                    panic!("cannot run {CHROMEDRIVER}: {error}; apt-get install chromium-driver")
                });
            let deadline = Instant::now() + WAIT;
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    failures.push(format!(
                        "chromedriver exited with {status}; see {}",
                        log_path.display()
                    ));
                    break;
                }
                if TcpStream::connect_timeout(&address, POLL).is_ok() {
                    return Self {
                        child,
                        url: format!("http://{address}"),
                        log: log_path,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!("chromedriver did not listen within {WAIT:?}"));
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
        panic!("chromedriver did not start: {}", failures.join("; "));
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !KEEP_LOGS.load(Ordering::Relaxed) && !std::thread::panicking() {
            let _ = fs::remove_file(&self.log);
        }
    }
}

/// Fails the test, never skips it, when the browser is not installed.
fn require_browser() {
    for binary in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(binary).is_file(),
            "{binary} is missing: the browser tests drive Debian's Chromium through \
             chromedriver; install them with `apt-get install chromium chromium-driver`"
        );
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a loopback port is free");
    listener.local_addr().expect("a bound address").port()
}

// ---------------------------------------------------------------------------
// The browser

/// One headless Chromium, driven through WebDriver.
///
/// Clones drive the same browser. Its profile directory is deleted when the
/// last clone is dropped (after [`browser_test`] closed the session).
#[derive(Clone, Debug)]
pub(crate) struct Browser {
    client: Client,
    base: String,
    profile: Arc<Profile>,
}

/// A fresh Chromium profile (`--user-data-dir`), and the chromedriver that
/// runs the browser using it.
#[derive(Debug)]
struct Profile {
    dir: PathBuf,
    driver: Arc<Driver>,
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Browser {
    /// Starts a headless Chromium with an empty profile, for `server`.
    async fn open(server: &Server) -> Result<Self, String> {
        static PROFILES: AtomicUsize = AtomicUsize::new(0);
        let driver = Driver::shared();
        let dir = scratch_dir().join(format!(
            "profile-{}-{}",
            std::process::id(),
            PROFILES.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("the profile directory can be created");
        let profile = Arc::new(Profile {
            dir,
            driver: Arc::clone(&driver),
        });
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    // No internet here: nothing may call home.
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    // A test that drives two windows of one browser needs
                    // the one out of focus to run its timers on time.
                    "--disable-background-timer-throttling",
                    "--disable-backgrounding-occluded-windows",
                    "--disable-renderer-backgrounding",
                    "--window-size=1000,760",
                    format!("--user-data-dir={}", profile.dir.display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("json! of an object is an object");
        };
        let connect = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await;
        let client = connect.map_err(|error| {
            format!(
                "chromedriver could not start {CHROMIUM}: {error}; \
                 is `apt-get install chromium chromium-driver` complete?"
            )
        })?;
        Ok(Self {
            client,
            base: server.base.clone(),
            profile,
        })
    }

    /// Opens `path` of the app and waits until the page has loaded.
    pub(crate) async fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|error| panic!("cannot open {url}: {error}"));
        self.wait_until_loaded().await;
    }

    /// Goes one page back in the window's history (the browser's Back
    /// button), and waits until that page has loaded.
    pub(crate) async fn back(&self) {
        self.client.back().await.expect("the browser goes back");
        self.wait_until_loaded().await;
    }

    /// Opens a new window of this browser (same profile, same cookies) and
    /// returns its handle; the current window stays the one driven.
    pub(crate) async fn new_window(&self) -> WindowHandle {
        self.client
            .new_window(false)
            .await
            .expect("the browser opens a window")
            .handle
    }

    /// Returns the handle of the window being driven.
    pub(crate) async fn window(&self) -> WindowHandle {
        self.client.window().await.expect("a current window")
    }

    /// Drives `window` from now on.
    pub(crate) async fn switch_to(&self, window: &WindowHandle) {
        self.client
            .switch_to_window(window.clone())
            .await
            .expect("the window can be switched to");
    }

    /// Runs `script` (a function body) in the current page and returns what
    /// it returns. It does not wait for anything the script starts.
    pub(crate) async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|error| panic!("the script failed: {error}\n{script}"))
    }

    /// Waits until `script` returns something other than `null` or `false`,
    /// and returns that.
    pub(crate) async fn wait_for_script(&self, what: &str, script: &str) -> Value {
        eventually(what, || async {
            let value = self.client.execute(script, Vec::new()).await.ok()?;
            (!matches!(value, Value::Null | Value::Bool(false))).then_some(value)
        })
        .await
    }

    /// Reloads the current page.
    pub(crate) async fn reload(&self) {
        self.client.refresh().await.expect("the page reloads");
        self.wait_until_loaded().await;
    }

    /// Waits for the element that `css` selects and returns it.
    pub(crate) async fn find(&self, css: &str) -> Element {
        let found = self
            .client
            .wait()
            .at_most(WAIT)
            .every(POLL)
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(error) => panic!("no element `{css}` on {}: {error}", self.path().await),
        }
    }

    /// Returns whether the current page has an element that `css` selects.
    pub(crate) async fn has(&self, css: &str) -> bool {
        let found = self.client.find_all(Locator::Css(css)).await;
        !found.expect("the page can be searched").is_empty()
    }

    /// Returns the text of the element that `css` selects, waiting for it.
    pub(crate) async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .expect("an element has text")
    }

    /// Returns the `data-page` of the current page: `home`, `shop`, `cart`.
    pub(crate) async fn page(&self) -> String {
        self.find("body")
            .await
            .attr("data-page")
            .await
            .expect("the body can be read")
            .unwrap_or_default()
    }

    /// Types `text` into the field that `css` selects.
    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("the field can be cleared");
        field.send_keys(text).await.expect("the field takes text");
    }

    /// Clicks the element that `css` selects (a button or a link that
    /// leaves the page), and waits until the next page has loaded: after a
    /// form's `303`, that is the page it redirected to.
    pub(crate) async fn click(&self, css: &str) {
        let target = self.find(css).await;
        let old_page = self.find("html").await;
        target
            .click()
            .await
            .unwrap_or_else(|error| panic!("cannot click `{css}`: {error}"));
        // The old document is gone once its root element is stale.
        eventually(
            &format!("the page to change after clicking `{css}`"),
            || {
                let old_page = old_page.clone();
                async move {
                    match old_page.tag_name().await {
                        Err(error) if error.is_stale_element_reference() => Some(()),
                        _ => None,
                    }
                }
            },
        )
        .await;
        self.wait_until_loaded().await;
    }

    /// Waits until the current page has loaded (also after a navigation a
    /// script started).
    pub(crate) async fn wait_until_loaded(&self) {
        eventually("the page to load", || async {
            let state = self
                .client
                .execute("return document.readyState", Vec::new())
                .await
                .ok()?;
            (state == "complete").then_some(())
        })
        .await;
    }

    /// Returns the path of the current page.
    pub(crate) async fn path(&self) -> String {
        match self.client.current_url().await {
            Ok(url) => url.path().to_owned(),
            Err(error) => format!("<unknown page: {error}>"),
        }
    }

    /// Returns the URL of the current page.
    pub(crate) async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("the browser has a URL")
            .to_string()
    }

    /// Returns the cookie called `name` that the browser holds for the
    /// current page, read through WebDriver (which sees `HttpOnly` cookies).
    pub(crate) async fn cookie(&self, name: &str) -> Option<Cookie<'static>> {
        let cookies = self
            .client
            .get_all_cookies()
            .await
            .expect("the cookies can be read");
        cookies.into_iter().find(|cookie| cookie.name() == name)
    }

    /// Replaces the browser's cookie of that name with `cookie`.
    pub(crate) async fn replace_cookie(&self, cookie: Cookie<'static>) {
        let name = cookie.name().to_owned();
        self.client
            .delete_cookie(&name)
            .await
            .expect("the cookie can be deleted");
        self.client
            .add_cookie(cookie)
            .await
            .expect("the cookie can be added");
    }

    /// Saves a PNG screenshot of the viewport to `path`.
    pub(crate) async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("a screenshot");
        fs::write(path, png).expect("the screenshot can be saved");
    }
}

/// Polls `probe` until it returns `Some`, for at most [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------
// The server

/// One response the server sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) status: StatusCode,
}

type Hits = Arc<Mutex<Vec<Hit>>>;

/// An app served on a free loopback port, for as long as the test runs.
#[derive(Clone, Debug)]
pub(crate) struct Server {
    base: String,
    hits: Hits,
    /// Error statuses the test expects, which the final check lets pass.
    allowed: Arc<Mutex<Vec<StatusCode>>>,
}

impl Server {
    async fn start(app: Router) -> Self {
        let hits = Hits::default();
        let app = app.layer(middleware::from_fn_with_state(Arc::clone(&hits), record));
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a loopback port is free");
        let address = listener.local_addr().expect("a bound address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base: format!("http://{address}"),
            hits,
            allowed: Arc::default(),
        }
    }

    /// Lets responses with `status` pass the check that ends every browser
    /// test: for a test that expects some requests to be refused.
    pub(crate) fn allow(&self, status: StatusCode) {
        self.allowed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(status);
    }

    /// Returns every response sent so far, oldest first.
    pub(crate) fn hits(&self) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Returns the last response to `method path`.
    pub(crate) fn last(&self, method: Method, path: &str) -> Option<Hit> {
        self.hits()
            .into_iter()
            .rev()
            .find(|hit| hit.method == method && hit.path == path)
    }

    /// Checks that no request was answered with an error, except the
    /// browser's own request for a favicon and the statuses the test
    /// [allowed](Self::allow).
    pub(crate) fn assert_no_errors(&self) {
        let allowed = self
            .allowed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let errors: Vec<Hit> = self
            .hits()
            .into_iter()
            .filter(|hit| hit.status.as_u16() >= 400 && hit.path != "/favicon.ico")
            .filter(|hit| !allowed.contains(&hit.status))
            .collect();
        assert!(errors.is_empty(), "the server answered errors: {errors:?}");
    }
}

async fn record(State(hits): State<Hits>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let hit = Hit {
        method,
        path,
        status: response.status(),
    };
    hits.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(hit);
    response
}
