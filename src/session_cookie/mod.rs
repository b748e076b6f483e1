//! Everything about the session cookie: its attributes and their
//! validation, the `Set-Cookie` values built from them, the response headers
//! that go with them (`Vary`, `Cache-Control`), and, in [`codec`], the signed
//! value and the strict `Cookie` header parser.

pub(crate) mod codec;

use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::header::{CACHE_CONTROL, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue};

use crate::error::{Error, ErrorKind};

/// The default cookie name: a generic name that does not reveal the framework
/// (OWASP session management cheat sheet).
pub(crate) const DEFAULT_NAME: &str = "id";

/// The attributes of the session cookie.
#[derive(Debug, Clone)]
pub(crate) struct CookieConfig {
    pub(crate) name: String,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
        }
    }
}

/// The most bytes a browser keeps for a cookie's name and value together
/// (RFC 6265bis, section 5.6).
const MAX_NAME_AND_VALUE: usize = 4096;

/// What the response does with the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CookieAction {
    /// Sets the cookie to `value`; a persistent cookie carries a `Max-Age`.
    Set {
        value: String,
        max_age: Option<Duration>,
    },
    /// Removes the cookie from the browser.
    Remove,
}

impl CookieConfig {
    /// Checks the attributes and the rules of the cookie name prefixes.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let fail = |message| Err(Error::message(ErrorKind::Config, message));
        if self.name.is_empty() || !self.name.bytes().all(is_token_byte) {
            return fail("the cookie name must be a non-empty RFC 6265 token");
        }
        // Browsers refuse a cookie whose name and value exceed 4096 bytes.
        if self.name.len() + 1 + codec::VALUE_LEN > MAX_NAME_AND_VALUE {
            return fail("the cookie name is too long: name and value must fit in 4096 bytes");
        }
        if !self.path.starts_with('/') || !self.path.bytes().all(is_attribute_byte) {
            return fail(
                "the cookie path must start with `/` and hold no `;` or control characters",
            );
        }
        if let Some(domain) = &self.domain {
            let valid = !domain.is_empty()
                && domain
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-'));
            if !valid {
                return fail("the cookie domain must be a host name");
            }
        }
        if self.same_site == SameSite::None && !self.secure {
            return fail("`SameSite=None` requires `Secure`");
        }
        // Browsers match the prefixes without regard to case.
        if has_prefix(&self.name, "__Secure-") && !self.secure {
            return fail("a `__Secure-` cookie requires `Secure`");
        }
        if has_prefix(&self.name, "__Host-") {
            if !self.secure {
                return fail("a `__Host-` cookie requires `Secure`");
            }
            if self.path != "/" {
                return fail("a `__Host-` cookie requires `Path=/`");
            }
            if self.domain.is_some() {
                return fail("a `__Host-` cookie must not set `Domain`");
            }
        }
        // Every value the layer renders is ASCII; prove once that the
        // attributes make a valid header so rendering can never fail later.
        let sample = CookieAction::Set {
            value: "A".repeat(codec::VALUE_LEN),
            max_age: Some(Duration::from_secs(1)),
        };
        if self.render(&sample).is_none() || self.render(&CookieAction::Remove).is_none() {
            return fail("the cookie attributes do not form a valid header");
        }
        Ok(())
    }

    /// Renders a `Set-Cookie` value for `action`.
    ///
    /// Returns `None` only for attributes that [`validate`](Self::validate)
    /// refuses.
    pub(crate) fn render(&self, action: &CookieAction) -> Option<HeaderValue> {
        let value = match action {
            CookieAction::Set { value, .. } => value.as_str(),
            CookieAction::Remove => "",
        };
        let mut cookie = Cookie::build((self.name.as_str(), value))
            .secure(self.secure)
            .http_only(self.http_only)
            .same_site(self.same_site)
            .path(self.path.as_str());
        if let Some(domain) = &self.domain {
            cookie = cookie.domain(domain.as_str());
        }
        let mut cookie = cookie.build();
        match action {
            CookieAction::Set {
                max_age: Some(max_age),
                ..
            } => {
                let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
                cookie.set_max_age(cookie::time::Duration::seconds(seconds));
            }
            CookieAction::Set { max_age: None, .. } => {}
            CookieAction::Remove => cookie.make_removal(),
        }
        HeaderValue::try_from(cookie.to_string()).ok()
    }
}

/// Whether `name` starts with `prefix`, ignoring ASCII case.
fn has_prefix(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// RFC 6265 `token`: visible ASCII except separators.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_graphic()
        && !matches!(
            byte,
            b'(' | b')'
                | b'<'
                | b'>'
                | b'@'
                | b','
                | b';'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'='
                | b'{'
                | b'}'
        )
}

/// RFC 6265 `av-octet`: any visible character but `;`.
fn is_attribute_byte(byte: u8) -> bool {
    (byte.is_ascii_graphic() || byte == b' ') && byte != b';'
}

/// Which caching headers the layer adds beyond the cookie's own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderPolicy {
    /// `Cache-Control: no-store` on every response that read a stored
    /// session.
    pub(crate) no_store: bool,
    /// `Clear-Site-Data: "cache"` when `destroy` ends a stored session.
    pub(crate) clear_site_data: bool,
}

impl Default for HeaderPolicy {
    fn default() -> Self {
        Self {
            no_store: true,
            clear_site_data: true,
        }
    }
}

/// The session headers of a response whose session was read.
#[derive(Debug, Default)]
pub(crate) struct SessionHeaders {
    /// The cookie to set or remove.
    pub(crate) cookie: Option<CookieAction>,
    /// The response read a stored session.
    pub(crate) private: bool,
    /// `destroy` ended a stored session.
    pub(crate) ended: bool,
}

/// Adds the session headers to a response whose session was read: `Vary:
/// Cookie` always; with a cookie to set, that `Set-Cookie` (the only one for
/// the session name) and `Cache-Control: no-store`; and what `policy` asks
/// for a response that read a stored session or ended one.
pub(crate) fn write_headers(
    headers: &mut HeaderMap,
    config: &CookieConfig,
    policy: HeaderPolicy,
    session: &SessionHeaders,
) {
    add_vary_cookie(headers);
    if policy.clear_site_data && session.ended {
        headers.insert(CLEAR_SITE_DATA, HeaderValue::from_static("\"cache\""));
    }
    // `validate` rendered both shapes of cookie when the layer was built.
    let value = session
        .cookie
        .as_ref()
        .and_then(|cookie| config.render(cookie));
    if let Some(value) = value {
        remove_session_cookies(headers, &config.name);
        headers.append(SET_COOKIE, value);
    } else if !(policy.no_store && session.private) {
        return;
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The `Clear-Site-Data` header, which `http` has no constant for.
const CLEAR_SITE_DATA: http::HeaderName = http::HeaderName::from_static("clear-site-data");

/// Prepares the headers of a response that replaces the handler's after a
/// failed save: no `Set-Cookie` for the session name, and `Vary: Cookie`.
pub(crate) fn write_error_headers(headers: &mut HeaderMap, config: &CookieConfig) {
    remove_session_cookies(headers, &config.name);
    add_vary_cookie(headers);
}

/// Keeps at most one `Set-Cookie` for the session name: drops any the handler
/// set itself.
fn remove_session_cookies(headers: &mut HeaderMap, name: &str) {
    let is_session_cookie = |value: &HeaderValue| {
        let bytes = value.as_bytes();
        bytes.starts_with(name.as_bytes()) && bytes.get(name.len()) == Some(&b'=')
    };
    if !headers.get_all(SET_COOKIE).iter().any(is_session_cookie) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|value| !is_session_cookie(value))
        .cloned()
        .collect();
    headers.remove(SET_COOKIE);
    for value in kept {
        headers.append(SET_COOKIE, value);
    }
}

/// Adds `Cookie` to `Vary`, merged into the existing list.
fn add_vary_cookie(headers: &mut HeaderMap) {
    let mut tokens = Vec::new();
    for value in headers.get_all(VARY) {
        let Ok(text) = value.to_str() else { continue };
        for token in text
            .split(',')
            .map(str::trim)
            .filter(|token| !token.is_empty())
        {
            if token == "*" || token.eq_ignore_ascii_case("cookie") {
                return;
            }
            tokens.push(token.to_owned());
        }
    }
    if tokens.is_empty() {
        headers.insert(VARY, HeaderValue::from_static("Cookie"));
        return;
    }
    tokens.push("Cookie".to_owned());
    if let Ok(value) = HeaderValue::from_str(&tokens.join(", ")) {
        headers.insert(VARY, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codec::VALUE_LEN;

    fn rendered(config: &CookieConfig, action: &CookieAction) -> String {
        let value = config.render(action).expect("valid config renders");
        value.to_str().expect("ascii").to_owned()
    }

    #[test]
    fn defaults_are_secure() {
        let config = CookieConfig::default();
        config.validate().expect("defaults are valid");
        let header = rendered(
            &config,
            &CookieAction::Set {
                value: "v".into(),
                max_age: None,
            },
        );
        assert_eq!(header, "id=v; HttpOnly; SameSite=Lax; Secure; Path=/");
    }

    #[test]
    fn removal_repeats_every_attribute() {
        let config = CookieConfig {
            domain: Some("example.com".into()),
            path: "/app".into(),
            same_site: SameSite::Strict,
            ..CookieConfig::default()
        };
        let header = rendered(&config, &CookieAction::Remove);
        for part in [
            "id=;",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/app",
            "Domain=example.com",
            "Max-Age=0",
        ] {
            assert!(header.contains(part), "{part} missing from {header}");
        }
    }

    #[test]
    fn the_longest_accepted_name_fills_4096_bytes() {
        let config = CookieConfig {
            name: "n".repeat(4096 - 1 - VALUE_LEN),
            ..CookieConfig::default()
        };
        config
            .validate()
            .expect("name, `=` and value fit in 4096 bytes");
    }

    #[test]
    fn prefixes_and_same_site_none_are_enforced() {
        let invalid = [
            CookieConfig {
                name: "__Host-id".into(),
                secure: false,
                ..CookieConfig::default()
            },
            CookieConfig {
                name: "__Host-id".into(),
                path: "/app".into(),
                ..CookieConfig::default()
            },
            CookieConfig {
                name: "__Host-id".into(),
                domain: Some("example.com".into()),
                ..CookieConfig::default()
            },
            CookieConfig {
                name: "__Secure-id".into(),
                secure: false,
                ..CookieConfig::default()
            },
            CookieConfig {
                name: "__secure-id".into(),
                secure: false,
                ..CookieConfig::default()
            },
            CookieConfig {
                name: "__HOST-id".into(),
                path: "/app".into(),
                ..CookieConfig::default()
            },
            CookieConfig {
                same_site: SameSite::None,
                secure: false,
                ..CookieConfig::default()
            },
            CookieConfig {
                name: "bad name".into(),
                ..CookieConfig::default()
            },
            CookieConfig {
                name: "n".repeat(4096 - VALUE_LEN),
                ..CookieConfig::default()
            },
            CookieConfig {
                path: "/a;b".into(),
                ..CookieConfig::default()
            },
            CookieConfig {
                domain: Some("evil.com; Secure".into()),
                ..CookieConfig::default()
            },
        ];
        for config in invalid {
            let error = config.validate().expect_err("invalid config");
            assert_eq!(error.kind(), ErrorKind::Config, "{config:?}");
        }
        let host = CookieConfig {
            name: "__Host-id".into(),
            ..CookieConfig::default()
        };
        host.validate()
            .expect("`__Host-` with the defaults is valid");
    }

    #[test]
    fn vary_is_merged_once() {
        let mut headers = HeaderMap::new();
        add_vary_cookie(&mut headers);
        assert_eq!(headers[VARY], "Cookie");
        add_vary_cookie(&mut headers);
        assert_eq!(headers.get_all(VARY).iter().count(), 1);

        let mut headers = HeaderMap::new();
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
        headers.append(VARY, HeaderValue::from_static("Origin"));
        add_vary_cookie(&mut headers);
        assert_eq!(headers[VARY], "Accept-Encoding, Origin, Cookie");

        let mut headers = HeaderMap::new();
        headers.insert(VARY, HeaderValue::from_static("*"));
        add_vary_cookie(&mut headers);
        assert_eq!(headers[VARY], "*");
    }

    #[test]
    fn handler_session_cookies_are_replaced() {
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, HeaderValue::from_static("id=handler; Path=/"));
        headers.append(SET_COOKIE, HeaderValue::from_static("idx=keep"));
        headers.append(SET_COOKIE, HeaderValue::from_static("theme=dark"));
        remove_session_cookies(&mut headers, "id");
        let left: Vec<_> = headers.get_all(SET_COOKIE).iter().collect();
        assert_eq!(left, ["idx=keep", "theme=dark"]);
    }
}
