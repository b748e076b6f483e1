//! The demo app (`examples/demo`) answers every failure a visitor can meet
//! with a page of its own (its layout and nav, the message where flash
//! messages appear, `text/html`), never plain text: a form too large or
//! malformed, a store that is down when the session is loaded or saved, a
//! session ended by another tab while a request was saving it, a handler's
//! failed session call, an unknown address, a wrong method.

use axum::Router;
use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, COOKIE};
use axum::http::{Method, Request, StatusCode};
use axum::routing::post;
use session_layer::{Error, MemoryStore, Session, SessionLayer, SessionStore};

use crate::demo_app as app;
use crate::support::{App, FaultyStore, Op, Reply, join, key};

const FORM: &str = "application/x-www-form-urlencoded";

/// The demo on `store`, with the test key.
fn demo(store: impl SessionStore) -> App {
    App::with_router(
        app::app(store, key(7)).expect("the demo app builds"),
        SessionLayer::DEFAULT_COOKIE_NAME,
    )
}

/// The demo on a store whose calls can be made to fail, and that store.
fn faulty() -> (App, FaultyStore<MemoryStore>) {
    let store = FaultyStore::new(MemoryStore::default());
    (demo(store.clone()), store)
}

fn fail_every_call(store: &FaultyStore<MemoryStore>) {
    for op in [Op::Load, Op::Create, Op::Update, Op::Delete, Op::Rotate] {
        store.fail(op, true);
    }
}

/// Sends `method uri` with `body` as a form (`content_type`, if any) and the
/// session cookie `cookie`, if any.
async fn send(
    app: &App,
    (method, uri): (Method, &str),
    content_type: Option<&str>,
    body: impl Into<Body>,
    cookie: Option<&str>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    if let Some(value) = cookie {
        request = request.header(COOKIE, format!("{}={value}", app.cookie_name));
    }
    app.call(request.body(body.into()).expect("a valid request"))
        .await
}

async fn post_form(app: &App, uri: &str, form: impl Into<Body>, cookie: Option<&str>) -> Reply {
    send(app, (Method::POST, uri), Some(FORM), form, cookie).await
}

/// Starts a session with one item in the cart and returns its cookie value.
async fn start_shopping(app: &App) -> String {
    let reply = post_form(app, "/cart/add", "item=tea", None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    reply.session_value().expect("adding starts a session")
}

/// Checks that `reply` is the demo's error page with `status`, in the
/// layout every page shares, with `message` in the flash area, and without
/// a session cookie.
#[track_caller]
fn assert_problem_page(reply: &Reply, status: StatusCode, message: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(
        reply.header(CONTENT_TYPE),
        Some("text/html; charset=utf-8"),
        "a page, never plain text: {}",
        reply.body
    );
    let body = &reply.body;
    assert!(body.starts_with("<!doctype html>"), "{body}");
    assert!(
        body.contains(
            "<nav><a href=/>Home</a> <a href=/shop>Shop</a> <a href=/cart id=cart-link>Cart</a></nav>"
        ),
        "the demo's nav: {body}"
    );
    assert!(body.contains("<body data-page=problem>"), "{body}");
    assert!(body.contains("· session-layer demo</title>"), "{body}");
    let flash = format!("<p id=flash class=\"flash error\" role=status>{message}</p>");
    assert!(body.contains(&flash), "expected {flash} in {body}");
    assert_eq!(
        reply.session_value(),
        None,
        "an error page sets no session cookie"
    );
}

#[tokio::test]
async fn an_oversized_form_is_a_413_page() {
    let app = demo(MemoryStore::default());
    let cookie = start_shopping(&app).await;
    // Over axum's default body limit of 2 MB.
    let form = format!("item={}", "a".repeat(3 * 1024 * 1024));
    for cookie in [None, Some(cookie.as_str())] {
        let reply = post_form(&app, "/cart/add", form.clone(), cookie).await;
        assert_problem_page(
            &reply,
            StatusCode::PAYLOAD_TOO_LARGE,
            "That form was too large for the shop to accept, so nothing was changed; \
             please go back and send less.",
        );
    }
    let reply = post_form(
        &app,
        "/login",
        format!("name={}", "x".repeat(3 << 20)),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    // The cart is as it was.
    let reply = app.get("/cart", Some(&cookie)).await;
    assert!(reply.body.contains("<tr data-item=tea>"), "{}", reply.body);
}

#[tokio::test]
async fn a_malformed_form_is_a_4xx_page() {
    let app = demo(MemoryStore::default());
    let message = "The shop could not read that form, so nothing was changed; \
                   please go back and try again.";
    // Not a form at all.
    let reply = send(
        &app,
        (Method::POST, "/cart/add"),
        Some("application/json"),
        r#"{"item":"tea"}"#,
        None,
    )
    .await;
    assert_problem_page(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, message);
    let reply = send(&app, (Method::POST, "/login"), None, "name=Ada", None).await;
    assert_problem_page(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, message);
    // A form without the field the action needs.
    for (uri, form) in [
        ("/cart/add", "product=tea"),
        ("/cart/remove", ""),
        ("/login", "remember=on"),
    ] {
        let reply = post_form(&app, uri, form, None).await;
        assert_problem_page(&reply, StatusCode::UNPROCESSABLE_ENTITY, message);
    }
}

#[tokio::test]
async fn a_store_that_fails_every_call_is_a_500_page_for_load_and_save() {
    let (app, store) = faulty();
    let cookie = start_shopping(&app).await;
    fail_every_call(&store);

    // A request with a cookie loads its session first: the load fails.
    let loading = "The shop cannot reach its session store, so your session could not be \
                   loaded; please try again in a moment.";
    for uri in ["/", "/shop", "/cart"] {
        let reply = app.get(uri, Some(&cookie)).await;
        assert_problem_page(&reply, StatusCode::INTERNAL_SERVER_ERROR, loading);
        assert!(reply.set_cookies().is_empty(), "{uri}: {reply:?}");
    }
    for (uri, form) in [("/cart/add", "item=mug"), ("/logout", "")] {
        let reply = post_form(&app, uri, form, Some(&cookie)).await;
        assert_problem_page(&reply, StatusCode::INTERNAL_SERVER_ERROR, loading);
        assert!(reply.set_cookies().is_empty(), "{uri}: {reply:?}");
    }

    // A visitor without a cookie loads nothing, and every page counts a
    // visit, which the layer then fails to save.
    let saving = "The shop cannot reach its session store, so this was not saved; \
                  please try again in a moment.";
    for uri in ["/", "/shop", "/cart"] {
        let reply = app.get(uri, None).await;
        assert_problem_page(&reply, StatusCode::INTERNAL_SERVER_ERROR, saving);
        assert!(reply.set_cookies().is_empty(), "{uri}: {reply:?}");
    }
    let reply = post_form(&app, "/login", "name=Ada", None).await;
    assert_problem_page(&reply, StatusCode::INTERNAL_SERVER_ERROR, saving);
    assert!(reply.set_cookies().is_empty(), "{reply:?}");

    // Back up, the session is as it was.
    for op in [Op::Load, Op::Create, Op::Update, Op::Delete, Op::Rotate] {
        store.fail(op, false);
    }
    let reply = app.get("/cart", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains("<tr data-item=tea>"), "{}", reply.body);
    assert!(!reply.body.contains("data-item=mug"), "{}", reply.body);
}

#[tokio::test]
async fn a_failed_save_after_the_load_is_a_500_page() {
    let (app, store) = faulty();
    let cookie = start_shopping(&app).await;
    store.fail(Op::Update, true);
    let reply = post_form(&app, "/cart/add", "item=mug", Some(&cookie)).await;
    assert_problem_page(
        &reply,
        StatusCode::INTERNAL_SERVER_ERROR,
        "The shop cannot reach its session store, so this was not saved; \
         please try again in a moment.",
    );
    assert!(reply.set_cookies().is_empty(), "{reply:?}");
}

#[tokio::test]
async fn a_session_ended_by_another_tab_while_saving_is_a_409_page() {
    let (app, store) = faulty();
    let cookie = start_shopping(&app).await;

    // Tab 1 adds to the cart; its save waits while tab 2 signs out.
    let gate = store.hold_next(Op::Update);
    let adding = {
        let (app, cookie) = (app.clone(), cookie.clone());
        tokio::spawn(async move { post_form(&app, "/cart/add", "item=mug", Some(&cookie)).await })
    };
    gate.reached().await;
    let signed_out = post_form(&app, "/logout", "", Some(&cookie)).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    gate.open();
    let reply = join(adding).await;
    assert_problem_page(
        &reply,
        StatusCode::CONFLICT,
        "Your session ended in another tab (signed out, or signed in anew) while this \
         was being saved, so it was not saved; please try again.",
    );
    assert!(reply.set_cookies().is_empty(), "{reply:?}");
}

#[tokio::test]
async fn a_page_view_that_loses_its_save_to_another_tab_asks_for_a_reload() {
    let (app, store) = faulty();
    let cookie = start_shopping(&app).await;

    // Tab 1 shows the shop (a page view counts a visit); its save waits
    // while tab 2 signs out.
    let gate = store.hold_next(Op::Update);
    let viewing = {
        let (app, cookie) = (app.clone(), cookie.clone());
        tokio::spawn(async move { app.get("/shop", Some(&cookie)).await })
    };
    gate.reached().await;
    let signed_out = post_form(&app, "/logout", "", Some(&cookie)).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    gate.open();
    let reply = join(viewing).await;
    // Not "please try again": nothing the visitor did was lost.
    assert_problem_page(
        &reply,
        StatusCode::CONFLICT,
        "Another tab changed your session (signing in, say) while this page was \
         loading, so it may be out of date; please reload it.",
    );
    assert!(reply.set_cookies().is_empty(), "{reply:?}");
}

#[tokio::test]
async fn a_failed_session_call_in_a_handler_is_a_500_page() {
    // Another app on the same store and key leaves a cart the demo cannot
    // read: its pages fail to decode it.
    async fn spoil(session: Session) -> Result<&'static str, Error> {
        session.insert("cart", "not a cart")?;
        Ok("spoiled")
    }
    let store = MemoryStore::default();
    let other = App::with_router(
        Router::new()
            .route("/spoil", post(spoil))
            .layer(SessionLayer::new(store.clone(), key(7))),
        SessionLayer::DEFAULT_COOKIE_NAME,
    );
    let app = demo(store);
    let cookie = start_shopping(&app).await;
    assert_eq!(
        other.post("/spoil", Some(&cookie)).await.status,
        StatusCode::OK
    );

    for uri in ["/", "/cart"] {
        let reply = app.get(uri, Some(&cookie)).await;
        assert_problem_page(
            &reply,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong with your session, so this was not done; \
             please try again later.",
        );
    }
}

#[tokio::test]
async fn unknown_addresses_and_wrong_methods_are_pages_that_need_no_store() {
    let (app, store) = faulty();
    let cookie = start_shopping(&app).await;
    // Not even a load is tried.
    fail_every_call(&store);
    for cookie in [None, Some(cookie.as_str())] {
        let reply = app.get("/nowhere", cookie).await;
        assert_problem_page(
            &reply,
            StatusCode::NOT_FOUND,
            "There is no page at this address.",
        );
        // A form's address typed into the address bar.
        let reply = app.get("/cart/add", cookie).await;
        assert_problem_page(
            &reply,
            StatusCode::METHOD_NOT_ALLOWED,
            "This address only takes a submitted form: start again from the home page.",
        );
        assert_eq!(
            reply.header("allow"),
            Some("POST"),
            "the 405 still says what the address takes"
        );
    }
}

#[tokio::test]
async fn a_request_with_the_id_from_before_sign_in_is_refused_with_a_page_and_no_cookie() {
    let app = demo(MemoryStore::default());
    let before = start_shopping(&app).await;
    let reply = post_form(&app, "/login", "name=Ada", Some(&before)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let signed_in = reply
        .session_value()
        .expect("signing in sets the new cookie");

    // Another tab, which sent its request before the sign-in's cookie came
    // back: its add is refused, and it asks to try again.
    let reply = post_form(&app, "/cart/add", "item=mug", Some(&before)).await;
    assert_problem_page(
        &reply,
        StatusCode::CONFLICT,
        "You signed in from another tab just as this was being saved, so it was not \
         saved; please try again.",
    );
    assert!(reply.set_cookies().is_empty(), "{reply:?}");
    // Its page view reads the session as it was, but cannot count the visit.
    let reply = app.get("/shop", Some(&before)).await;
    assert_problem_page(
        &reply,
        StatusCode::CONFLICT,
        "Another tab changed your session (signing in, say) while this page was \
         loading, so it may be out of date; please reload it.",
    );
    assert!(reply.set_cookies().is_empty(), "{reply:?}");

    // Trying again, with the new cookie, succeeds.
    let reply = post_form(&app, "/cart/add", "item=mug", Some(&signed_in)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let reply = app.get("/cart", Some(&signed_in)).await;
    assert!(
        reply.body.contains("Signed in as <b id=user>Ada</b>"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("<tr data-item=tea>"), "{}", reply.body);
    assert!(reply.body.contains("<tr data-item=mug>"), "{}", reply.body);
}

#[tokio::test]
async fn pages_are_no_store_and_signing_out_clears_the_cache() {
    let app = demo(MemoryStore::default());
    let cookie = start_shopping(&app).await;
    for uri in ["/", "/shop", "/cart"] {
        let reply = app.get(uri, Some(&cookie)).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
        assert!(reply.set_cookies().is_empty(), "{uri}: no cookie to set");
        assert_eq!(reply.cache_control(), Some("no-store"), "{uri}");
    }
    let reply = post_form(&app, "/logout", "", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.header("clear-site-data"), Some("\"cache\""));
    assert_eq!(reply.cache_control(), Some("no-store"));
}
