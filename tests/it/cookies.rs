//! The cookie: forged and malformed values, key rotation, prefixes (on the
//! removal cookie too) and the configuration checked at build time.

use std::time::Duration;

use crate::support;
use crate::support::{App, key};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderValue, StatusCode};
use session_layer::{ErrorKind, MemoryStore, SameSite, SessionLayer};

/// Replaces the character at `index` with another base64url character.
fn flip(value: &str, index: usize) -> String {
    let mut bytes = value.as_bytes().to_vec();
    let byte = bytes.get_mut(index).expect("index inside the value");
    *byte = if *byte == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII")
}

#[tokio::test]
async fn forged_cookies_are_anonymous_without_any_store_load() {
    let (app, store, memory) = support::counted();
    let value = app.start_session().await;
    assert_eq!(value.len(), 64);

    // A session signed by another key, on another store.
    let foreign = App::new(SessionLayer::new(MemoryStore::default(), key(2)))
        .start_session()
        .await;
    // A session minted for another cookie name, same key, same store.
    let other_name = App::named(
        SessionLayer::builder(memory.clone(), key(1))
            .cookie_name("other")
            .build()
            .expect("valid config"),
        "other",
    )
    .start_session()
    .await;
    assert!(
        support::stored(&memory, &other_name).await.is_some(),
        "the record exists"
    );

    let forgeries = [
        ("flipped in the id", flip(&value, 3)),
        ("flipped in the tag", flip(&value, 40)),
        ("flipped last char", flip(&value, 63)),
        ("truncated", value.get(..63).expect("64 chars").to_owned()),
        ("one more char", format!("{value}A")),
        ("over-long", "A".repeat(4096)),
        ("padded", format!("{value}==")),
        ("standard base64 alphabet", value.replace(['-', '_'], "+")),
        ("quoted", format!("\"{value}\"")),
        ("signed by another key", foreign),
        ("minted for another cookie name", other_name.clone()),
        ("empty", String::new()),
    ];
    let loads = store.loads();
    let records = memory.len();
    for (what, forged) in &forgeries {
        if forged == &value {
            continue; // e.g. no `-` or `_` to replace
        }
        let reply = app.get("/get/k", Some(forged)).await;
        assert_eq!(reply.status, StatusCode::OK, "{what}");
        assert_eq!(reply.body, "<none>", "{what}: anonymous");
        assert!(reply.headers.get(SET_COOKIE).is_none(), "{what}: {reply:?}");
        assert_eq!(
            store.loads(),
            loads,
            "{what}: the signature is checked before any load"
        );

        // A write gets a fresh id, never the forged one.
        let reply = app.post("/set/k/w", Some(forged)).await;
        assert_eq!(reply.status, StatusCode::OK, "{what}");
        let fresh = reply.session_value().expect("a write starts a session");
        assert_ne!(&fresh, forged, "{what}");
        assert_ne!(support::id_of(&fresh), support::id_of(&value), "{what}");
        assert_ne!(
            support::id_of(&fresh),
            support::id_of(&other_name),
            "{what}"
        );
        assert_eq!(store.loads(), loads, "{what}: still no load");
    }
    // The genuine session is untouched.
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");
    assert!(memory.len() > records);
}

#[tokio::test]
async fn a_fallback_key_verifies_and_the_cookie_is_reissued_under_the_primary() {
    let memory = MemoryStore::default();
    let old = App::new(SessionLayer::new(memory.clone(), key(0xA)));
    let signed_by_a = old.start_session().await;

    let rotated = App::new(
        SessionLayer::builder(memory.clone(), key(0xB))
            .fallback_key(key(0xA))
            .build()
            .expect("valid config"),
    );
    let reply = rotated.get("/get/k", Some(&signed_by_a)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body, "v",
        "the A-signed cookie still loads the session"
    );
    let reissued = reply.session_cookie().expect("the cookie is re-issued");
    assert_ne!(reissued.value, signed_by_a);
    assert_eq!(reissued.value.len(), 64);
    assert_eq!(
        support::id_of(&reissued.value),
        support::id_of(&signed_by_a),
        "same session, new signature"
    );
    assert_eq!(reissued.attribute("HttpOnly"), Some(None));
    assert_eq!(reissued.attribute("Secure"), Some(None));
    assert!(!reissued.has("Max-Age"));
    assert_eq!(reply.cache_control(), Some("no-store"));
    assert_eq!(memory.len(), 1);

    // The new value is signed by B: B alone accepts it, A alone does not.
    let only_b = App::new(SessionLayer::new(memory.clone(), key(0xB)));
    assert_eq!(only_b.get("/get/k", Some(&reissued.value)).await.body, "v");
    let only_a = App::new(SessionLayer::new(memory.clone(), key(0xA)));
    assert_eq!(
        only_a.get("/get/k", Some(&reissued.value)).await.body,
        "<none>"
    );

    // Once A is retired, the A-signed cookie is anonymous.
    assert_eq!(
        only_b.get("/get/k", Some(&signed_by_a)).await.body,
        "<none>"
    );

    // With the B-signed cookie, the rotated layer sends nothing more.
    let reply = rotated.get("/get/k", Some(&reissued.value)).await;
    assert_eq!(reply.body, "v");
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");

    // A write through an A-signed cookie is saved and re-signed as well.
    let reply = rotated.post("/set/k/w", Some(&signed_by_a)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let value = reply.session_value().expect("re-issued with the write");
    assert_eq!(only_b.get("/get/k", Some(&value)).await.body, "w");
    assert_eq!(memory.len(), 1);
}

#[tokio::test]
async fn invalid_configurations_fail_at_build() {
    let builder = || SessionLayer::builder(MemoryStore::default(), key(1));
    let cases = [
        (
            "__Host- without Secure",
            builder().cookie_name("__Host-id").secure(false),
        ),
        (
            "__Host- with Path=/x",
            builder().cookie_name("__Host-id").path("/x"),
        ),
        (
            "__Host- with Domain",
            builder().cookie_name("__Host-id").domain("example.com"),
        ),
        (
            "__Secure- without Secure",
            builder().cookie_name("__Secure-id").secure(false),
        ),
        (
            "SameSite=None without Secure",
            builder().same_site(SameSite::None).secure(false),
        ),
        ("zero idle timeout", builder().idle_timeout(Duration::ZERO)),
        (
            "zero absolute timeout",
            builder().absolute_timeout(Duration::ZERO),
        ),
        (
            "over-long idle timeout",
            builder().idle_timeout(Duration::from_secs(401 * 86_400)),
        ),
        (
            "refresh after more than the idle timeout",
            builder().refresh_after(Duration::from_secs(45 * 60)),
        ),
        (
            "refresh after exactly the idle timeout (never refreshes)",
            builder().refresh_after(Duration::from_secs(30 * 60)),
        ),
        (
            "refresh after a shortened idle timeout",
            builder()
                .refresh_after(Duration::from_secs(10 * 60))
                .idle_timeout(Duration::from_secs(5 * 60)),
        ),
        ("zero save attempts", builder().max_save_attempts(0)),
        ("empty cookie name", builder().cookie_name("")),
        ("cookie name with a space", builder().cookie_name("my id")),
        ("cookie name with =", builder().cookie_name("a=b")),
        ("path without a leading /", builder().path("app")),
        ("path with ;", builder().path("/a;b")),
        (
            "domain injecting attributes",
            builder().domain("example.com; Secure"),
        ),
    ];
    for (what, builder) in cases {
        let error = builder.build().expect_err(what);
        assert_eq!(error.kind(), ErrorKind::Config, "{what}: {error}");
    }

    // Short keys are refused when the key is made.
    let error = session_layer::Key::from_bytes(&[7; 31]).expect_err("31 bytes");
    assert_eq!(error.kind(), ErrorKind::Key);

    // Valid neighbours of the cases above build.
    for builder in [
        builder().same_site(SameSite::None),
        builder().cookie_name("__Secure-id"),
        builder().refresh_after(Duration::ZERO),
        builder().refresh_after(Duration::from_secs(30 * 60 - 1)),
        builder().path("/app").domain("example.com"),
    ] {
        let _layer = builder.build().expect("a valid configuration");
    }
}

/// Browsers match the `__Secure-` and `__Host-` prefixes case-insensitively
/// (RFC 6265bis, section 4.1.3) and drop a cookie that breaks their rules, so
/// the layer must refuse such a configuration at build time: a configuration
/// mistake is never a silent request-time surprise.
#[tokio::test]
async fn prefix_rules_apply_whatever_the_case_of_the_prefix() {
    let builder = || SessionLayer::builder(MemoryStore::default(), key(1));
    let cases = [
        (
            "__host- without Secure",
            builder().cookie_name("__host-id").secure(false),
        ),
        (
            "__HOST- with Path=/x",
            builder().cookie_name("__HOST-id").path("/x"),
        ),
        (
            "__Host- lower-case with Domain",
            builder().cookie_name("__host-id").domain("example.com"),
        ),
        (
            "__secure- without Secure",
            builder().cookie_name("__secure-id").secure(false),
        ),
        (
            "__SECURE- without Secure",
            builder().cookie_name("__SECURE-id").secure(false),
        ),
    ];
    for (what, builder) in cases {
        let error = builder.build().expect_err(what);
        assert_eq!(error.kind(), ErrorKind::Config, "{what}: {error}");
    }
}

#[tokio::test]
async fn secure_can_be_turned_off_for_plain_http_development() {
    let layer = SessionLayer::builder(MemoryStore::default(), key(1))
        .secure(false)
        .build()
        .expect("valid config");
    let reply = App::new(layer).post("/set/k/v", None).await;
    let cookie = reply.session_cookie().expect("set");
    assert!(!cookie.has("Secure"), "{cookie:?}");
    assert_eq!(cookie.attribute("HttpOnly"), Some(None));
}

#[tokio::test]
async fn a_host_prefixed_cookie_works_end_to_end() {
    let memory = MemoryStore::default();
    let layer = SessionLayer::builder(memory.clone(), key(1))
        .cookie_name("__Host-id")
        .build()
        .expect("`__Host-` with the defaults is valid");
    let app = App::named(layer, "__Host-id");

    let reply = app.post("/set/k/v", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let cookie = reply.session_cookie().expect("set");
    assert_eq!(cookie.name, "__Host-id");
    assert_eq!(cookie.attribute("Secure"), Some(None));
    assert_eq!(cookie.value_of("Path"), Some("/"));
    assert!(!cookie.has("Domain"));

    assert_eq!(app.get("/get/k", Some(&cookie.value)).await.body, "v");
    // The plain name does not match the prefixed one.
    let plain = App::named(SessionLayer::new(memory.clone(), key(1)), "__Host-id");
    let reply = plain
        .get_with_cookie_lines(
            "/get/k",
            vec![HeaderValue::from_str(&format!("id={}", cookie.value)).expect("ASCII")],
        )
        .await;
    assert_eq!(reply.body, "<none>");
}

#[tokio::test]
async fn custom_attributes_are_sent() {
    let layer = SessionLayer::builder(MemoryStore::default(), key(1))
        .cookie_name("sid")
        .same_site(SameSite::Strict)
        .http_only(false)
        .path("/app")
        .domain("example.com")
        .build()
        .expect("valid config");
    let app = App::named(layer, "sid");
    let reply = app.post("/set/k/v", None).await;
    let cookie = reply.session_cookie().expect("set");
    assert_eq!(cookie.name, "sid");
    assert_eq!(cookie.value_of("SameSite"), Some("Strict"));
    assert!(!cookie.has("HttpOnly"));
    assert_eq!(cookie.attribute("Secure"), Some(None));
    assert_eq!(cookie.value_of("Path"), Some("/app"));
    assert_eq!(cookie.value_of("Domain"), Some("example.com"));
}

#[tokio::test]
async fn several_cookie_lines_and_binary_neighbours_do_not_hide_the_session() {
    let (app, store, _memory) = support::counted();
    let value = app.start_session().await;
    let line = |text: &str| HeaderValue::from_str(text).expect("valid header");
    let binary = HeaderValue::from_bytes(b"junk=\xff\xfe\x80; other=\xc3\x28").expect("obs-text");
    let forged = flip(&value, 50);

    let cases = [
        (
            "two Cookie lines",
            vec![line("theme=dark; lang=en"), line(&format!("id={value}"))],
        ),
        (
            "non-UTF-8 cookie first",
            vec![binary.clone(), line(&format!("id={value}"))],
        ),
        (
            "Latin-1 cookie in the same line",
            vec![
                HeaderValue::from_bytes(
                    &[b"name=\xe9t\xe9; id=".as_slice(), value.as_bytes()].concat(),
                )
                .expect("obs-text"),
            ],
        ),
        (
            "binary bytes then the session cookie on one line",
            vec![
                HeaderValue::from_bytes(
                    &[b"x=\xff\xff; id=".as_slice(), value.as_bytes()].concat(),
                )
                .expect("obs-text"),
            ],
        ),
        (
            "forged first, valid second",
            vec![line(&format!("id={forged}; id={value}"))],
        ),
        (
            "forged first line, valid second line",
            vec![line(&format!("id={forged}")), line(&format!("id={value}"))],
        ),
        (
            "valid first, forged second",
            vec![line(&format!("id={value}; id={forged}"))],
        ),
        (
            "spaces around pairs",
            vec![line(&format!("  a=b ;   id={value}  ; c=d"))],
        ),
    ];
    for (what, lines) in cases {
        let reply = app.get_with_cookie_lines("/get/k", lines).await;
        assert_eq!(reply.status, StatusCode::OK, "{what}");
        assert_eq!(reply.body, "v", "{what}: the valid cookie wins");
        assert!(reply.headers.get(SET_COOKIE).is_none(), "{what}");
    }

    // Names match exactly: none of these is the session cookie.
    let loads = store.loads();
    for text in [
        format!("ID={value}"),
        format!("xid={value}"),
        format!("idx={value}"),
        format!("id ={value}"),
        value.clone(),
    ] {
        let reply = app.get_with_cookie_lines("/get/k", vec![line(&text)]).await;
        assert_eq!(reply.status, StatusCode::OK, "{text}");
        assert_eq!(reply.body, "<none>", "{text}");
    }
    assert_eq!(store.loads(), loads, "no near-miss name reaches the store");
}

#[tokio::test]
async fn huge_and_random_cookie_headers_are_anonymous_and_never_panic() {
    let (app, store, memory) = support::counted();
    let value = app.start_session().await;
    let loads = store.loads();

    // A 1 MB header, in several shapes.
    let megabyte = 1 << 20;
    let huge = [
        format!("id={}", "A".repeat(megabyte)),
        format!("big={}; id=forged", "x".repeat(megabyte)),
        "id=a;".repeat(megabyte / 5),
        ";".repeat(megabyte),
        "=".repeat(megabyte),
        format!("{}id=", " ".repeat(megabyte)),
    ];
    for text in huge {
        let reply = app
            .get_with_cookie_lines(
                "/get/k",
                vec![HeaderValue::from_str(&text).expect("visible ASCII")],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "<none>");
        assert!(reply.headers.get(SET_COOKIE).is_none());
    }

    // Thousands of forged `id=` cookies before a valid one: bounded work, and
    // the valid one is past the bound, so the request is anonymous.
    let many = format!(
        "{}id={value}",
        format!("id={}; ", flip(&value, 10)).repeat(5000)
    );
    let reply = app
        .get_with_cookie_lines("/get/k", vec![HeaderValue::from_str(&many).expect("ASCII")])
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "<none>");

    // Random bytes (a fixed xorshift seed, so a failure reproduces).
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..500 {
        let len = usize::try_from(next() % 300).expect("small");
        let mut bytes: Vec<u8> = (0..len)
            .map(|_| next().to_le_bytes().first().copied().unwrap_or(0))
            // `HeaderValue` refuses control bytes other than tab.
            .filter(|&byte| byte == b'\t' || (byte >= 0x20 && byte != 0x7f))
            .collect();
        if round % 3 == 0 {
            bytes.splice(0..0, b"id=".iter().copied());
        }
        let Ok(header) = HeaderValue::from_bytes(&bytes) else {
            continue;
        };
        let reply = app.get_with_cookie_lines("/get/k", vec![header]).await;
        assert_eq!(reply.status, StatusCode::OK, "round {round}: {bytes:?}");
        assert_eq!(reply.body, "<none>", "round {round}");
        assert!(reply.headers.get(SET_COOKIE).is_none(), "round {round}");
    }
    assert_eq!(store.loads(), loads, "no forged value reached the store");
    assert_eq!(memory.len(), 1);
    // The real session is still fine.
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");
}

// The removal of a `__Host-` cookie keeps the prefix's rules.

#[tokio::test]
async fn a_host_prefixed_removal_cookie_keeps_the_prefix_rules() {
    let memory = MemoryStore::default();
    let layer = SessionLayer::builder(memory.clone(), key(1))
        .cookie_name("__Host-id")
        .build()
        .expect("valid config");
    let app = App::named(layer, "__Host-id");
    let value = app.start_session().await;

    let reply = app.post("/destroy", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let removal = reply.session_cookie().expect("a removal cookie");
    assert_eq!(removal.name, "__Host-id");
    assert_eq!(removal.value, "");
    assert_eq!(removal.max_age(), Some(0));
    assert_eq!(removal.attribute("Secure"), Some(None));
    assert_eq!(removal.value_of("Path"), Some("/"));
    assert!(!removal.has("Domain"), "{removal:?}");
    assert_eq!(removal.attribute("HttpOnly"), Some(None));
    assert_eq!(removal.value_of("SameSite"), Some("Lax"));
    assert_eq!(reply.set_cookies().len(), 1);
    assert_eq!(reply.cache_control(), Some("no-store"));
    assert_eq!(memory.len(), 0);
}
