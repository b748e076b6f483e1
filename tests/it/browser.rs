//! The demo app (`examples/demo`) in a real browser: Debian's headless
//! Chromium, driven through chromedriver (WebDriver).
//!
//! These tests prove what a hand-made HTTP client cannot: that a browser
//! really stores the cookie the layer writes (`Secure` included, over plain
//! `http://127.0.0.1`), sends it back on every page, drops a rotated or
//! destroyed one, and keeps a "remember me" cookie only as long as the
//! server will honour it.
//!
//! They need `apt-get install chromium chromium-driver`, and fail, never
//! skip, when it is missing. Each test serves its own copy of the demo on
//! `127.0.0.1:0` and opens fresh browser profiles; the tests running at the
//! same time share one chromedriver.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::demo_app as app;
use crate::support::browser::{Browser, Server, browser_test, scratch_dir};
use axum::Router;
use axum::http::{Method, StatusCode};
use fantoccini::cookies::Cookie;
use session_layer::{Key, MemoryStore, SameSite, SessionLayer};

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
