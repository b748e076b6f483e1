//! The demo app (`examples/demo`) in a real browser: Debian's headless
//! Chromium, driven through chromedriver (WebDriver).
//!
//! These tests prove what a hand-made HTTP client cannot: that a browser
//! really stores the cookie the layer writes (`Secure` included, over plain
//! `http://127.0.0.1`), sends it back on every page, drops a rotated or
//! destroyed one, and keeps a "remember me" cookie only as long as the
//! server will honour it; that two tabs of one browser signing in and adding
//! to the cart at the same moment lose neither the sign-in nor an item; and
//! that Back after sign-out shows no signed-in page from the cache.
//!
//! They need `apt-get install chromium chromium-driver`, and fail, never
//! skip, when it is missing. Each test serves its own copy of the demo on
//! `127.0.0.1:0` and opens fresh browser profiles; the tests running at the
//! same time share one chromedriver.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::demo_app as app;
use crate::support::browser::{Browser, Server, browser_test, scratch_dir};
use crate::support::{FaultyStore, Op};
use axum::Router;
use axum::http::{Method, StatusCode};
use fantoccini::cookies::Cookie;
use fantoccini::wd::WindowHandle;
use serde_json::{Value, json};
use session_layer::{Key, MemoryStore, SameSite, SessionLayer, SessionLayerBuilder};

/// The demo app on a fresh memory store, with a fresh key.
fn demo() -> Router {
    app::app(MemoryStore::default(), Key::generate().expect("a key")).expect("the demo app builds")
}

/// Returns the session cookie the browser holds; fails if there is none.
async fn session_cookie(browser: &Browser) -> Cookie<'static> {
    browser
        .cookie(SessionLayer::DEFAULT_COOKIE_NAME)
        .await
        .expect("the browser holds the session cookie")
}

/// Signs in as `name` through the form on the home page.
async fn sign_in(browser: &Browser, name: &str, remember: bool) {
    browser.goto("/").await;
    browser.fill("#name", name).await;
    if remember {
        let checkbox = browser.find("#remember").await;
        checkbox.click().await.expect("the box can be ticked");
        assert!(checkbox.is_selected().await.expect("a checkbox"));
    }
    browser.click("#login").await;
    assert_eq!(browser.page().await, "home", "sign-in redirects home");
    assert_eq!(
        browser.text("#flash").await,
        format!("Signed in as {name}.")
    );
    assert_eq!(browser.text("#user").await, name);
}

/// Signs out with the button on the home page.
async fn sign_out(browser: &Browser) {
    browser.goto("/").await;
    browser.click("#logout").await;
    assert_eq!(browser.page().await, "home", "sign-out redirects home");
    assert_eq!(browser.text("#flash").await, "You have signed out.");
    assert_signed_out(browser).await;
}

async fn assert_signed_out(browser: &Browser) {
    assert_eq!(browser.text("#status").await, "Not signed in");
    assert!(!browser.has("#user").await);
    if browser.page().await == "home" {
        assert!(browser.has("#login-form").await, "the sign-in form is back");
    }
}

async fn visits(browser: &Browser) -> u64 {
    let text = browser.text("#visits").await;
    text.parse().expect("the visit count is a number")
}

async fn cart_count(browser: &Browser) -> u32 {
    let text = browser.text("#cart-count").await;
    text.parse().expect("the cart count is a number")
}

/// Returns the quantity of `item` on the cart page, or `None` if it is not
/// in the cart.
async fn quantity(browser: &Browser, item: &str) -> Option<u32> {
    let row = format!("tr[data-item={item}] .qty");
    if !browser.has(&row).await {
        return None;
    }
    Some(browser.text(&row).await.parse().expect("a quantity"))
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
}

/// Checks the attributes every session cookie of the demo has.
fn assert_cookie_attributes(cookie: &Cookie<'_>) {
    assert_eq!(cookie.name(), SessionLayer::DEFAULT_COOKIE_NAME);
    assert_eq!(cookie.http_only(), Some(true), "HttpOnly: {cookie}");
    assert_eq!(cookie.secure(), Some(true), "Secure: {cookie}");
    assert_eq!(
        cookie.same_site(),
        Some(SameSite::Lax),
        "SameSite: {cookie}"
    );
    assert_eq!(cookie.path(), Some("/"), "Path: {cookie}");
    // A host-only cookie: WebDriver reports the host it came from.
    assert_eq!(cookie.domain(), Some("127.0.0.1"), "Domain: {cookie}");
}

#[tokio::test]
async fn signing_in_keeps_the_cart_and_the_count_and_signing_out_clears_them() {
    browser_test(demo(), |_server: Server, [browser]| async move {
        browser.goto("/").await;
        assert_signed_out(&browser).await;
        assert_eq!(visits(&browser).await, 1);
        assert_eq!(cart_count(&browser).await, 0);

        // Fill the cart as an anonymous visitor.
        browser.goto("/shop").await;
        assert_eq!(visits(&browser).await, 2);
        browser.click("#add-tea").await;
        assert_eq!(
            browser.page().await,
            "shop",
            "adding redirects back to the shop"
        );
        assert_eq!(
            browser.text("#flash").await,
            "Added Green tea to your cart."
        );
        browser.click("#add-tea").await;
        browser.click("#add-mug").await;
        assert_eq!(
            browser.text("#flash").await,
            "Added Enamel mug to your cart."
        );
        assert_eq!(cart_count(&browser).await, 3);
        assert_eq!(visits(&browser).await, 5);

        browser.click("#cart-link").await;
        assert_eq!(browser.page().await, "cart");
        assert!(!browser.has("#flash").await, "a flash message shows once");
        assert_eq!(quantity(&browser, "tea").await, Some(2));
        assert_eq!(quantity(&browser, "mug").await, Some(1));
        assert_eq!(browser.text("#total").await, "€21.00");
        browser.click("#remove-tea").await;
        assert_eq!(
            browser.page().await,
            "cart",
            "removing redirects back to the cart"
        );
        assert_eq!(
            browser.text("#flash").await,
            "Removed one Green tea from your cart."
        );
        assert_eq!(quantity(&browser, "tea").await, Some(1));
        assert_eq!(visits(&browser).await, 7);

        // Signing in keeps what the session held.
        sign_in(&browser, "Ada", false).await;
        assert_eq!(visits(&browser).await, 9);
        assert_eq!(cart_count(&browser).await, 2);
        browser.goto("/cart").await;
        assert_eq!(browser.text("#user").await, "Ada");
        assert_eq!(quantity(&browser, "tea").await, Some(1));
        assert_eq!(quantity(&browser, "mug").await, Some(1));
        assert_eq!(visits(&browser).await, 10);
        let screenshot = scratch_dir().join("signed-in-cart.png");
        browser.screenshot(&screenshot).await;
        browser.goto("/shop").await;
        assert_eq!(cart_count(&browser).await, 2);
        assert_eq!(visits(&browser).await, 11);

        // Signing out ends the session: a new one starts, empty but for the
        // flash message.
        sign_out(&browser).await;
        assert_eq!(visits(&browser).await, 1);
        assert_eq!(cart_count(&browser).await, 0);
        browser.goto("/cart").await;
        assert!(browser.has("#cart-empty").await);
        assert_signed_out(&browser).await;
    })
    .await;
}

#[tokio::test]
async fn the_cookie_is_http_only_secure_lax_and_ends_with_the_browser_session() {
    browser_test(demo(), |_server: Server, [browser]| async move {
        browser.goto("/").await;
        // Plain HTTP to 127.0.0.1, a secure context for Chromium: the
        // `Secure` cookie is stored...
        assert!(browser.url().await.starts_with("http://127.0.0.1:"));
        let cookie = session_cookie(&browser).await;
        assert_cookie_attributes(&cookie);
        assert_eq!(cookie.expires(), None, "a browser-session cookie: {cookie}");
        assert_eq!(browser.text("#cookie-kind").await, "browser session");

        // ...and sent back: the count goes on.
        browser.reload().await;
        assert_eq!(visits(&browser).await, 2);
        browser.goto("/cart").await;
        assert_eq!(visits(&browser).await, 3);

        // Without "remember me", signing in keeps a browser-session cookie.
        sign_in(&browser, "Ada", false).await;
        let cookie = session_cookie(&browser).await;
        assert_cookie_attributes(&cookie);
        assert_eq!(
            cookie.expires(),
            None,
            "still a browser-session cookie: {cookie}"
        );
        assert_eq!(browser.text("#cookie-kind").await, "browser session");
    })
    .await;
}

#[tokio::test]
async fn remember_me_makes_the_cookie_persistent_for_the_idle_timeout() {
    browser_test(demo(), |_server: Server, [browser]| async move {
        browser.goto("/").await;
        assert_eq!(session_cookie(&browser).await.expires(), None);

        let before = unix_now();
        sign_in(&browser, "Ada", true).await;
        let after = unix_now();
        let cookie = session_cookie(&browser).await;
        assert_cookie_attributes(&cookie);
        let expiry = cookie
            .expires_datetime()
            .unwrap_or_else(|| panic!("remember me gives the cookie an expiry: {cookie}"))
            .unix_timestamp();
        let idle = i64::try_from(app::IDLE_TIMEOUT.as_secs()).expect("a sane timeout");
        let earliest = i64::try_from(before.as_secs()).expect("a sane time") + idle - 2;
        let latest = i64::try_from(after.as_secs()).expect("a sane time") + 1 + idle;
        assert!(
            (earliest..=latest).contains(&expiry),
            "the cookie expires at {expiry}, expected now + {idle} s ({earliest}..={latest})"
        );
        assert_eq!(
            browser.text("#cookie-kind").await,
            "persistent (remember me)"
        );

        // Browsing on keeps it persistent, and never pushes it beyond the
        // server's own deadline.
        browser.goto("/shop").await;
        let later = session_cookie(&browser).await;
        let later_expiry = later
            .expires_datetime()
            .expect("still persistent")
            .unix_timestamp();
        let now = i64::try_from(unix_now().as_secs()).expect("a sane time");
        assert!(
            later_expiry <= now + 1 + idle,
            "{later_expiry} > {now} + {idle}"
        );

        // Signing out drops it; the new session's cookie (it carries the
        // "signed out" message) lasts for the browser session again.
        sign_out(&browser).await;
        let cookie = session_cookie(&browser).await;
        assert_cookie_attributes(&cookie);
        assert_eq!(cookie.expires(), None, "a browser-session cookie: {cookie}");
        assert_eq!(browser.text("#cookie-kind").await, "browser session");
    })
    .await;
}

#[tokio::test]
async fn signing_in_rotates_the_cookie_value() {
    browser_test(demo(), |_server: Server, [browser]| async move {
        browser.goto("/").await;
        let anonymous = session_cookie(&browser).await;
        browser.goto("/shop").await;
        browser.click("#add-biscuits").await;
        assert_eq!(
            session_cookie(&browser).await.value(),
            anonymous.value(),
            "browsing keeps the id"
        );

        sign_in(&browser, "Ada", false).await;
        let signed_in = session_cookie(&browser).await;
        assert_ne!(
            signed_in.value(),
            anonymous.value(),
            "signing in rotates the id"
        );
        assert_eq!(cart_count(&browser).await, 1, "and keeps the data");
        browser.goto("/cart").await;
        assert_eq!(session_cookie(&browser).await.value(), signed_in.value());

        // The id from before sign-in never reaches the signed-in session:
        // once the grace period for requests in flight is over, presenting
        // it gets a fresh, empty session. (What it gets during the grace
        // period is tested over HTTP, in `rotation`.)
        browser.replace_cookie(anonymous.clone()).await;
        tokio::time::sleep(SessionLayer::DEFAULT_ROTATION_GRACE + Duration::from_millis(500)).await;
        browser.goto("/").await;
        assert_signed_out(&browser).await;
        assert_eq!(cart_count(&browser).await, 0);
        let fresh = session_cookie(&browser).await;
        assert_ne!(fresh.value(), anonymous.value());
        assert_ne!(fresh.value(), signed_in.value());

        // Signing out (here of the signed-in session, restored) ends that id too.
        browser.replace_cookie(signed_in.clone()).await;
        browser.goto("/").await;
        assert_eq!(browser.text("#user").await, "Ada");
        sign_out(&browser).await;
        assert_ne!(session_cookie(&browser).await.value(), signed_in.value());
    })
    .await;
}

#[tokio::test]
async fn a_tampered_cookie_leaves_the_browser_signed_out() {
    browser_test(demo(), |server: Server, [browser]| async move {
        sign_in(&browser, "Ada", false).await;
        browser.goto("/shop").await;
        browser.click("#add-kettle").await;
        let original = session_cookie(&browser).await;

        // Flip one character of the value, keeping every attribute.
        let mut value: Vec<char> = original.value().chars().collect();
        let flipped = value.get_mut(20).expect("a long enough value");
        *flipped = if *flipped == 'A' { 'B' } else { 'A' };
        let value: String = value.into_iter().collect();
        let mut tampered = original.clone();
        tampered.set_value(value.clone());
        browser.replace_cookie(tampered).await;
        assert_eq!(session_cookie(&browser).await.value(), value);

        // The server answers normally, as to a visitor without a cookie.
        browser.goto("/").await;
        assert_eq!(
            server.last(Method::GET, "/").map(|hit| hit.status),
            Some(StatusCode::OK)
        );
        assert_eq!(browser.page().await, "home");
        assert_signed_out(&browser).await;
        assert_eq!(cart_count(&browser).await, 0);
        assert_eq!(visits(&browser).await, 1);
        let fresh = session_cookie(&browser).await;
        assert_ne!(fresh.value(), value, "the tampered cookie was replaced");
        assert_ne!(fresh.value(), original.value());

        // The tampering did no harm: the genuine cookie still signs in.
        browser.replace_cookie(original.clone()).await;
        browser.goto("/cart").await;
        assert_eq!(browser.text("#user").await, "Ada");
        assert_eq!(quantity(&browser, "kettle").await, Some(1));
    })
    .await;
}

#[tokio::test]
async fn two_browsers_keep_separate_sessions() {
    browser_test(demo(), |_server: Server, [ada, bob]| async move {
        sign_in(&ada, "Ada", false).await;
        ada.goto("/shop").await;
        ada.click("#add-tea").await;

        bob.goto("/").await;
        assert_signed_out(&bob).await;
        assert_eq!(cart_count(&bob).await, 0);
        assert_eq!(visits(&bob).await, 1);

        // User input is escaped: the name shows as typed, markup and all.
        sign_in(&bob, "<i>Bob</i>", false).await;
        assert!(!bob.has("#user i").await, "the name was not parsed as HTML");
        bob.goto("/shop").await;
        bob.click("#add-mug").await;
        bob.click("#add-mug").await;

        ada.goto("/cart").await;
        assert_eq!(ada.text("#user").await, "Ada");
        assert_eq!(quantity(&ada, "tea").await, Some(1));
        assert_eq!(quantity(&ada, "mug").await, None);
        bob.goto("/cart").await;
        assert_eq!(bob.text("#user").await, "<i>Bob</i>");
        assert_eq!(quantity(&bob, "mug").await, Some(2));
        assert_eq!(quantity(&bob, "tea").await, None);
        assert_ne!(
            session_cookie(&ada).await.value(),
            session_cookie(&bob).await.value()
        );

        // One signing out leaves the other signed in.
        sign_out(&ada).await;
        bob.reload().await;
        assert_eq!(bob.text("#user").await, "<i>Bob</i>");
        assert_eq!(quantity(&bob, "mug").await, Some(2));
    })
    .await;
}

/// What one round of [`two_tabs_at_sign_in_lose_no_item_and_no_sign_in`]
/// saw.
#[derive(Debug)]
struct Round {
    /// The status of tab 1's `POST /login` and of tab 2's `POST /cart/add`.
    login: Option<StatusCode>,
    add: Option<StatusCode>,
    /// The page tab 2 ended on, and its flash message.
    tab2: (String, String),
    signed_in: bool,
    /// The cart afterwards: the item added before, and the one tab 2 added.
    tea: Option<u32>,
    mug: Option<u32>,
}

impl Round {
    fn add_ok(&self) -> bool {
        self.add == Some(StatusCode::SEE_OTHER)
    }

    fn add_refused(&self) -> bool {
        self.add == Some(StatusCode::CONFLICT)
    }

    /// An item the user was told was added is missing, or the first one is.
    fn lost(&self) -> bool {
        self.tea != Some(1) || (self.add_ok() && self.mug != Some(1))
    }

    fn passed(&self) -> bool {
        self.login == Some(StatusCode::SEE_OTHER)
            && (self.add_ok() || self.add_refused())
            && self.signed_in
            && !self.lost()
            // Never counted twice, nor added after all by a refused request.
            && self.mug == self.add_ok().then_some(1)
    }
}

/// The number of rounds of the two-tab test: `BROWSER_ROUNDS`, 3 unless set.
fn rounds() -> usize {
    std::env::var("BROWSER_ROUNDS").map_or(3, |rounds| {
        rounds
            .parse()
            .expect("BROWSER_ROUNDS is a number of rounds")
    })
}

/// Runs `script` in `window`, after marking its document, so
/// [`wait_for_next_page`] can tell the next one from it.
async fn run_in(browser: &Browser, window: &WindowHandle, script: &str, args: Vec<Value>) {
    browser.switch_to(window).await;
    browser
        .execute(&format!("window.__before = true; {script}"), args)
        .await;
}

/// Waits until `window` shows a page other than the one [`run_in`] marked,
/// fully loaded, and returns its `data-page` and flash message.
async fn wait_for_next_page(browser: &Browser, window: &WindowHandle) -> (String, String) {
    browser.switch_to(window).await;
    browser
        .wait_for_script(
            "the next page",
            "return !window.__before && document.readyState === 'complete' \
             && document.body && document.body.dataset.page",
        )
        .await;
    let page = browser.page().await;
    let flash = if browser.has("#flash").await {
        browser.text("#flash").await
    } else {
        String::new()
    };
    (page, flash)
}

/// One round: a fresh profile whose anonymous cart holds one item; then tab 1
/// signs in while tab 2, sharing its cookies, adds to the cart, at the same
/// moment.
async fn two_tabs_round(round: usize) -> Round {
    // A store that answers in 10 ms, as over a network, so the two requests
    // overlap in the server.
    let store = FaultyStore::new(MemoryStore::default());
    for op in [Op::Load, Op::Create, Op::Update, Op::Delete, Op::Rotate] {
        store.delay(op, Duration::from_millis(10));
    }
    let app = app::app(store, Key::generate().expect("a key")).expect("the demo app builds");
    let seen = Arc::new(Mutex::new(None));
    let report = Arc::clone(&seen);
    browser_test(app, move |server: Server, [browser]| async move {
        // A refused add is the demo's 409 page: expected, not an error.
        server.allow(StatusCode::CONFLICT);
        browser.goto("/shop").await;
        browser.click("#add-tea").await;
        assert_eq!(cart_count(&browser).await, 1);
        browser.goto("/").await;
        browser.fill("#name", "Ada").await;
        let tab1 = browser.window().await;
        let tab2 = browser.new_window().await;
        browser.switch_to(&tab2).await;
        browser.goto("/shop").await;

        // Both forms are submitted by timers set for one instant, give or
        // take a few milliseconds that change from round to round.
        let now = browser.execute("return Date.now()", Vec::new()).await;
        let at = now.as_f64().expect("a time") + 300.0;
        let skew = f64::from(u8::try_from(round % 9).expect("small")) * 3.0 - 12.0;
        let fire = "const [at, selector] = arguments; \
                    setTimeout(() => document.querySelector(selector).submit(), at - Date.now());";
        run_in(
            &browser,
            &tab2,
            fire,
            vec![json!(at + skew), json!("form:has(#add-mug)")],
        )
        .await;
        run_in(&browser, &tab1, fire, vec![json!(at), json!("#login-form")]).await;
        let tab2_page = wait_for_next_page(&browser, &tab2).await;
        wait_for_next_page(&browser, &tab1).await;

        browser.goto("/").await;
        let signed_in = browser.has("#user").await && browser.text("#user").await == "Ada";
        browser.goto("/cart").await;
        let outcome = Round {
            login: server.last(Method::POST, "/login").map(|hit| hit.status),
            add: server.last(Method::POST, "/cart/add").map(|hit| hit.status),
            tab2: tab2_page,
            signed_in,
            tea: quantity(&browser, "tea").await,
            mug: quantity(&browser, "mug").await,
        };
        if outcome.add_refused() {
            // The refusal is the demo's own page, and says what to do.
            assert_eq!(outcome.tab2.0, "problem", "{outcome:?}");
            assert!(outcome.tab2.1.contains("please try again"), "{outcome:?}");
        }
        *report.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
    })
    .await;
    let outcome = seen.lock().unwrap_or_else(PoisonError::into_inner).take();
    outcome.expect("the round reported what it saw")
}

/// Two tabs of one browser at sign-in: tab 1 signs in while tab 2 adds to
/// the cart, at the same moment. Whatever the order the server sees them
/// in, the user ends up signed in, with every item the demo reported as
/// added (a refusal, the demo's "please try again" page, is allowed; an item
/// lost silently is not).
///
/// `BROWSER_ROUNDS=50 cargo test --all-features --test it two_tabs -- --nocapture`
/// runs it 50 times, each with a fresh profile, and prints one line per round
/// and a summary (also in `target/tmp/browser/two-tabs.txt`).
#[tokio::test]
async fn two_tabs_at_sign_in_lose_no_item_and_no_sign_in() {
    let rounds = rounds();
    let mut seen = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let outcome = two_tabs_round(round).await;
        println!(
            "round {round}: add {}, login {}, tab 2 on {} ({:?}), signed in: {}, cart: tea {:?}, mug {:?}{}",
            match outcome.add {
                Some(StatusCode::SEE_OTHER) => "reported ok".to_owned(),
                Some(StatusCode::CONFLICT) => "reported retry".to_owned(),
                other => format!("answered {other:?}"),
            },
            outcome.login.map_or(0, |status| status.as_u16()),
            outcome.tab2.0,
            outcome.tab2.1,
            if outcome.signed_in { "yes" } else { "no" },
            outcome.tea,
            outcome.mug,
            if outcome.passed() { "" } else { "  <- FAILED" },
        );
        seen.push(outcome);
    }
    let count = |test: fn(&Round) -> bool| seen.iter().filter(|round| test(round)).count();
    let summary = format!(
        "rounds: {rounds}, signed in: {}, adds ok: {}, adds refused: {}, lost: {}",
        count(|round| round.signed_in),
        count(Round::add_ok),
        count(Round::add_refused),
        count(Round::lost),
    );
    println!("{summary}");
    let _ = std::fs::write(scratch_dir().join("two-tabs.txt"), format!("{summary}\n"));
    let failed: Vec<&Round> = seen.iter().filter(|round| !round.passed()).collect();
    assert!(failed.is_empty(), "{summary}; failed rounds: {failed:#?}");
}

/// Signs in, opens the cart, signs out, and goes Back twice, on the demo
/// behind `layer`: neither page may show anyone signed in, and the cart must
/// come from the server.
async fn back_after_sign_out(layer: SessionLayerBuilder) {
    let app = app::router(layer.build().expect("the demo's layer builds"));
    browser_test(app, |server: Server, [browser]| async move {
        sign_in(&browser, "Ada", false).await;
        browser.goto("/cart").await;
        assert_eq!(browser.text("#user").await, "Ada");
        // From the home page, which has the button: the history is now …,
        // the signed-in cart, the signed-in home page, the signed-out home
        // page.
        sign_out(&browser).await;

        // Back to the signed-in home page. The HTTP cache keeps one copy of
        // `/`, the newest, which is signed out: this step proves little.
        go_back(&browser).await;
        assert_eq!(browser.page().await, "home");
        assert_signed_out(&browser).await;

        // Back to the signed-in cart: only a fetch makes it signed out.
        let before = server.hits().len();
        go_back(&browser).await;
        assert_eq!(browser.page().await, "cart");
        let body = browser.text("body").await;
        assert!(!body.contains("Signed in as"), "from a cache: {body}");
        assert_signed_out(&browser).await;
        let fetched = server
            .hits()
            .into_iter()
            .skip(before)
            .any(|hit| hit.method == Method::GET && hit.path == "/cart");
        assert!(fetched, "the cart came from the server, not a cache");
    })
    .await;
}

/// After signing out, the browser's Back button brings no signed-in page
/// back from the cache. The demo has two defences, and in Chromium either
/// one is enough: every page that read the session is `Cache-Control:
/// no-store`, so it is fetched again, and signing out sends
/// `Clear-Site-Data: "cache"`, which empties the cache. (With both turned
/// off, Back shows the signed-in cart.)
#[tokio::test]
async fn back_after_sign_out_shows_no_signed_in_page() {
    let layer = || app::layer(MemoryStore::default(), Key::generate().expect("a key"));
    back_after_sign_out(layer()).await;
    back_after_sign_out(layer().clear_site_data(false)).await;
    back_after_sign_out(layer().no_store(false)).await;
}

/// Goes one page back in the history and waits until the page before shows
/// (from the server, or from a cache).
async fn go_back(browser: &Browser) {
    browser.execute("window.__before = true", Vec::new()).await;
    browser.back().await;
    browser
        .wait_for_script(
            "the page before",
            "return !window.__before && document.readyState === 'complete'",
        )
        .await;
}
