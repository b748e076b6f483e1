//! The demo's web application: its routes, its pages, and the session layer
//! it runs behind.
//!
//! Plain server-rendered HTML and forms, no JavaScript. Every page counts a
//! visit ([`Session::update`]), shows and consumes the flash message left by
//! the last action ([`Session::take`]), and the nav bar shows the cart, so
//! the pages prove that the browser keeps sending the cookie. Every `POST`
//! answers `303 See Other` back to a page.
//!
//! Every failure a visitor can meet is a page of the demo too, never plain
//! text: a [`Problem`], in the same layout, with its message where flash
//! messages appear. That covers a session that cannot be loaded or saved
//! (the store is down, another tab changed the session at the same moment), a
//! form that is too large or malformed, an unknown address and a wrong
//! method.
//!
//! `main.rs` serves this app; the integration tests include this file
//! (`tests/it/main.rs`) and serve it in-process: in a browser
//! (`tests/it/browser.rs`) and request by request (`tests/it/demo_pages.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use session_layer::{
    Error, ErrorKind, Key, Session, SessionLayer, SessionLayerBuilder, SessionRejection,
    SessionStore,
};

/// A session ends after this long without a request; a "remember me" cookie
/// lasts this long after the last request that refreshed it.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// A session ends this long after it was created, however active it is.
pub(crate) const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The longest name accepted at sign-in, in characters.
const MAX_NAME_CHARS: usize = 40;

/// The most units of one product a cart holds.
const MAX_QUANTITY: u32 = 99;

/// Session keys.
const USER: &str = "user";
const VISITS: &str = "visits";
const CART: &str = "cart";
const FLASH: &str = "flash";

/// The cart: product id to quantity.
type Cart = BTreeMap<String, u32>;

/// One product of the fixed catalogue.
struct Product {
    id: &'static str,
    name: &'static str,
    /// In euro cents.
    price: u32,
}

const CATALOGUE: [Product; 4] = [
    Product {
        id: "tea",
        name: "Green tea",
        price: 450,
    },
    Product {
        id: "mug",
        name: "Enamel mug",
        price: 1200,
    },
    Product {
        id: "biscuits",
        name: "Oat biscuits",
        price: 325,
    },
    Product {
        id: "kettle",
        name: "Stovetop kettle",
        price: 3900,
    },
];

fn product(id: &str) -> Option<&'static Product> {
    CATALOGUE.iter().find(|product| product.id == id)
}

/// A message shown once, on the next page the browser loads.
#[derive(Serialize, Deserialize)]
struct Flash {
    error: bool,
    text: String,
}

fn flash(session: &Session, text: impl Into<String>) -> Result<(), Error> {
    let text = text.into();
    session.insert(FLASH, Flash { error: false, text })
}

fn flash_error(session: &Session, text: impl Into<String>) -> Result<(), Error> {
    let text = text.into();
    session.insert(FLASH, Flash { error: true, text })
}

/// Returns the demo app behind a session layer on `store`, signed with `key`:
/// [`router`] behind [`layer`], built.
///
/// # Errors
///
/// Fails if the layer's configuration is refused (it is not: the timeouts
/// are valid).
pub(crate) fn app(store: impl SessionStore, key: Key) -> Result<Router, Error> {
    Ok(router(layer(store, key).build()?))
}

/// Returns the demo's session layer on `store`, signed with `key`, not yet
/// built: a test can change one setting and build it.
///
/// The cookie keeps the crate's defaults (`id`, `HttpOnly`, `Secure`,
/// `SameSite=Lax`, `Path=/`, a browser-session cookie); "remember me" makes
/// it persistent for [`IDLE_TIMEOUT`].
pub(crate) fn layer(store: impl SessionStore, key: Key) -> SessionLayerBuilder {
    SessionLayer::builder(store, key)
        .idle_timeout(IDLE_TIMEOUT)
        .absolute_timeout(ABSOLUTE_TIMEOUT)
        // The save failed, so no flash message can be stored: the page says
        // it directly. The layer sends it without the session cookie.
        .on_save_error(|error: &Error| Problem::session(error, Step::Save))
        // The defaults, said out loud, since the demo shows what they are for.
        // A request another tab sent with the id from before sign-in reads
        // the session as it was and gets no cookie that could sign the user
        // out; its changes are refused with a "please try again" page.
        .rotation_grace(SessionLayer::DEFAULT_ROTATION_GRACE)
        // Every page that read the session is `Cache-Control: no-store`, so
        // after signing out Back shows no signed-in page from the cache.
        .no_store(true)
        // Signing out (`destroy`) sends `Clear-Site-Data: "cache"`, which
        // drops whatever the browser cached while signed in.
        .clear_site_data(true)
}

/// Returns the demo's routes behind `layer`.
pub(crate) fn router(layer: SessionLayer) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/shop", get(shop))
        .route("/cart", get(cart))
        .route("/login", post(sign_in))
        .route("/logout", post(sign_out))
        .route("/cart/add", post(add_to_cart))
        .route("/cart/remove", post(remove_from_cart))
        .route("/cart/clear", post(clear_cart))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(layer)
        .layer(middleware::from_fn(page_view_conflicts))
}

// ---------------------------------------------------------------------------
// Pages

/// What every page shows about the session, read once per request.
struct Chrome {
    user: Option<String>,
    visits: u64,
    cart_items: u32,
    persistent: bool,
    flash: Option<Flash>,
}

impl Chrome {
    /// Counts this page view and takes the flash message.
    fn load(session: &Session) -> Result<Self, Error> {
        let visits = session.update(VISITS, |visits: Option<u64>| {
            visits.unwrap_or(0).saturating_add(1)
        })?;
        Ok(Self {
            user: session.get(USER)?,
            visits,
            cart_items: session
                .get::<Cart>(CART)?
                .unwrap_or_default()
                .values()
                .sum(),
            persistent: session.is_persistent(),
            flash: session.take(FLASH)?,
        })
    }

    fn render(&self, title: &str, page: &str, main: &str) -> Html<String> {
        let user = match &self.user {
            Some(name) => format!("Signed in as <b id=user>{}</b>", escape(name)),
            None => "Not signed in".to_owned(),
        };
        let flash = self
            .flash
            .as_ref()
            .map(|flash| (flash.error, flash.text.as_str()));
        let cookie = if self.persistent {
            "persistent (remember me)"
        } else {
            "browser session"
        };
        let footer = format!(
            "Pages viewed in this session: <b id=visits>{visits}</b> · \
             cookie: <span id=cookie-kind>{cookie}</span>",
            visits = self.visits,
        );
        layout(&Layout {
            title,
            page,
            cart_items: Some(self.cart_items),
            status: &user,
            flash,
            main,
            footer: &footer,
        })
    }
}

/// What one page puts into the layout every page shares.
struct Layout<'a> {
    title: &'a str,
    /// The body's `data-page`, which the browser tests read.
    page: &'a str,
    /// `None` where the session is not read, so the cart is not known.
    cart_items: Option<u32>,
    /// HTML: who is signed in.
    status: &'a str,
    /// Text: the message, and whether it reports an error.
    flash: Option<(bool, &'a str)>,
    /// HTML.
    main: &'a str,
    /// HTML.
    footer: &'a str,
}

fn layout(page: &Layout<'_>) -> Html<String> {
    let flash = match page.flash {
        Some((error, text)) => format!(
            "<p id=flash class=\"flash{}\" role=status>{}</p>",
            if error { " error" } else { "" },
            escape(text)
        ),
        None => String::new(),
    };
    let cart = match page.cart_items {
        Some(items) => format!("Cart (<span id=cart-count>{items}</span>)"),
        None => "Cart".to_owned(),
    };
    Html(format!(
        "<!doctype html>
<html lang=en>
<head>
<meta charset=utf-8>
<meta name=viewport content=\"width=device-width, initial-scale=1\">
<title>{title} · session-layer demo</title>
<style>{STYLE}</style>
</head>
<body data-page={data_page}>
<header>
<nav><a href=/>Home</a> <a href=/shop>Shop</a> <a href=/cart id=cart-link>{cart}</a></nav>
<span id=status>{status}</span>
</header>
<main>
{flash}
<h1>{title}</h1>
{main}
</main>
<footer>{footer}</footer>
</body>
</html>
",
        title = page.title,
        data_page = page.page,
        status = page.status,
        main = page.main,
        footer = page.footer,
    ))
}

const STYLE: &str = "
body{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:0 auto;padding:0 1rem;color:#222}
header{display:flex;justify-content:space-between;align-items:center;padding:.8rem 0;border-bottom:1px solid #ddd}
nav a{margin-right:1rem}
main{padding:.5rem 0 1rem}
footer{border-top:1px solid #ddd;padding:.6rem 0;color:#555;font-size:.9rem}
.flash{background:#e7f5e9;border:1px solid #9ccfa6;padding:.5rem .8rem;border-radius:4px}
.flash.error{background:#fdecea;border-color:#f2a39b}
table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #eee}
td.num,th.num{text-align:right}
form.inline{display:inline;margin:0}
fieldset{border:1px solid #ddd;border-radius:4px}
button{cursor:pointer}
";

async fn home(ShopSession(session): ShopSession) -> Result<Html<String>, Problem> {
    let chrome = Chrome::load(&session)?;
    let account = match &chrome.user {
        Some(name) => format!(
            "<p>Welcome back, {}. Your cart and your visit count came with you: \
             signing in gave the session a new id (<code>Session::cycle_id</code>) \
             and kept its data.</p>\
             <form method=post action=/logout id=logout-form>\
             <button id=logout>Sign out</button></form>\
             <p>Signing out deletes the session (<code>Session::destroy</code>); \
             the message you will see lives in a new one.</p>",
            escape(name)
        ),
        None => format!(
            "<form method=post action=/login id=login-form><fieldset>\
             <legend>Sign in</legend>\
             <p><label>Name <input id=name name=name required maxlength={MAX_NAME_CHARS} \
             autocomplete=username></label></p>\
             <p><label><input type=checkbox id=remember name=remember value=on> \
             Remember me: keep the cookie when the browser closes</label></p>\
             <p><button id=login>Sign in</button></p>\
             <p><small>Any name will do: this demo has no passwords.</small></p>\
             </fieldset></form>"
        ),
    };
    let main = format!(
        "<p>This app keeps everything in a server-side session, found through \
         one signed cookie. Browse the <a href=/shop>shop</a>, fill the \
         <a href=/cart>cart</a>, sign in and out, and watch the visit count.</p>\
         {account}"
    );
    Ok(chrome.render("Home", "home", &main))
}

async fn shop(ShopSession(session): ShopSession) -> Result<Html<String>, Problem> {
    let chrome = Chrome::load(&session)?;
    let mut rows = String::new();
    for product in &CATALOGUE {
        let _ = write!(
            rows,
            "<tr data-item={id}><td>{name}</td><td class=num>{price}</td><td>\
             <form method=post action=/cart/add class=inline>\
             <input type=hidden name=item value={id}>\
             <button id=add-{id}>Add to cart</button></form></td></tr>",
            id = product.id,
            name = product.name,
            price = euros(product.price),
        );
    }
    let main = format!(
        "<table id=catalogue><tr><th>Product</th><th class=num>Price</th><th></th></tr>\
         {rows}</table>"
    );
    Ok(chrome.render("Shop", "shop", &main))
}

async fn cart(ShopSession(session): ShopSession) -> Result<Html<String>, Problem> {
    let chrome = Chrome::load(&session)?;
    let cart = session.get::<Cart>(CART)?.unwrap_or_default();
    let mut rows = String::new();
    let mut total: u64 = 0;
    // Products that left the catalogue since they were added are skipped.
    let lines = cart
        .iter()
        .filter_map(|(id, &quantity)| Some((product(id)?, quantity)));
    for (item, quantity) in lines {
        let subtotal = u64::from(item.price) * u64::from(quantity);
        total += subtotal;
        let _ = write!(
            rows,
            "<tr data-item={id}><td>{name}</td><td class=\"num qty\">{quantity}</td>\
             <td class=num>{subtotal}</td><td>\
             <form method=post action=/cart/remove class=inline>\
             <input type=hidden name=item value={id}>\
             <button id=remove-{id}>Remove one</button></form></td></tr>",
            id = item.id,
            name = item.name,
            subtotal = euros(subtotal),
        );
    }
    let main = if rows.is_empty() {
        "<p id=cart-empty>Your cart is empty. <a href=/shop>Go shopping</a>.</p>".to_owned()
    } else {
        format!(
            "<table id=cart><tr><th>Product</th><th class=num>Quantity</th>\
             <th class=num>Subtotal</th><th></th></tr>{rows}\
             <tr><th>Total</th><th></th><th class=num id=total>{total}</th><th></th></tr>\
             </table>\
             <form method=post action=/cart/clear><p><button id=clear>Empty the cart</button></p></form>",
            total = euros(total),
        )
    };
    Ok(chrome.render("Cart", "cart", &main))
}

async fn not_found() -> Problem {
    // No session here: a page that does not extract it costs no store call.
    Problem::new(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no page at this address.",
    )
}

async fn wrong_method() -> Problem {
    // A form's address typed into the address bar, say.
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Nothing to see here",
        "This address only takes a submitted form: start again from the home page.",
    )
}

// ---------------------------------------------------------------------------
// Actions: each one changes the session, leaves a flash message, and answers
// `303 See Other` back to a page.

#[derive(Deserialize)]
struct SignIn {
    name: String,
    /// Present (as `on`) when the box is ticked.
    remember: Option<String>,
}

async fn sign_in(
    ShopSession(session): ShopSession,
    Form(form): Form<SignIn>,
) -> Result<Redirect, Problem> {
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        flash_error(
            &session,
            format!("Please enter a name of 1 to {MAX_NAME_CHARS} characters."),
        )?;
        return Ok(Redirect::to("/"));
    }
    // A real application checks a password here. Then: a new id for the new
    // privileges, so an id planted before sign-in is worthless after it.
    session.cycle_id();
    session.set_persistent(form.remember.is_some());
    session.insert(USER, name)?;
    flash(&session, format!("Signed in as {name}."))?;
    Ok(Redirect::to("/"))
}

async fn sign_out(ShopSession(session): ShopSession) -> Result<Redirect, Problem> {
    session.destroy();
    // Inserting after `destroy` starts a new session, just for the message;
    // like any new session, its cookie ends with the browser, even if the
    // one signed out was remembered.
    flash(&session, "You have signed out.")?;
    Ok(Redirect::to("/"))
}

#[derive(Deserialize)]
struct Item {
    item: String,
}

async fn add_to_cart(
    ShopSession(session): ShopSession,
    Form(form): Form<Item>,
) -> Result<Redirect, Problem> {
    let Some(product) = product(&form.item) else {
        flash_error(&session, "There is no such product.")?;
        return Ok(Redirect::to("/shop"));
    };
    let cart = session.get::<Cart>(CART)?.unwrap_or_default();
    if cart.get(product.id).is_some_and(|&n| n >= MAX_QUANTITY) {
        flash_error(
            &session,
            format!("You can have at most {MAX_QUANTITY} of one product."),
        )?;
        return Ok(Redirect::to("/shop"));
    }
    // `update` re-runs on a concurrent save, so two tabs adding at once both
    // count.
    let id = product.id;
    session.update(CART, move |cart: Option<Cart>| {
        let mut cart = cart.unwrap_or_default();
        let quantity = cart.entry(id.to_owned()).or_insert(0);
        *quantity = quantity.saturating_add(1).min(MAX_QUANTITY);
        cart
    })?;
    flash(&session, format!("Added {} to your cart.", product.name))?;
    Ok(Redirect::to("/shop"))
}

async fn remove_from_cart(
    ShopSession(session): ShopSession,
    Form(form): Form<Item>,
) -> Result<Redirect, Problem> {
    let cart = session.get::<Cart>(CART)?.unwrap_or_default();
    let Some(product) = product(&form.item).filter(|product| cart.contains_key(product.id)) else {
        flash_error(&session, "That product is not in your cart.")?;
        return Ok(Redirect::to("/cart"));
    };
    let id = product.id;
    session.update(CART, move |cart: Option<Cart>| {
        let mut cart = cart.unwrap_or_default();
        if let Some(quantity) = cart.get_mut(id) {
            *quantity = quantity.saturating_sub(1);
            if *quantity == 0 {
                cart.remove(id);
            }
        }
        cart
    })?;
    flash(
        &session,
        format!("Removed one {} from your cart.", product.name),
    )?;
    Ok(Redirect::to("/cart"))
}

async fn clear_cart(ShopSession(session): ShopSession) -> Result<Redirect, Problem> {
    session.remove(CART);
    flash(&session, "Your cart is empty now.")?;
    Ok(Redirect::to("/cart"))
}

// ---------------------------------------------------------------------------
// Failures: every one is a page of the demo.

/// A failure, answered as a page in the demo's layout with its message where
/// flash messages appear. It never reads the session: the session may be
/// what failed.
struct Problem {
    status: StatusCode,
    title: &'static str,
    message: &'static str,
}

/// What the request was doing with its session when it failed.
#[derive(Clone, Copy)]
enum Step {
    Load,
    Handle,
    Save,
}

impl Problem {
    fn new(status: StatusCode, title: &'static str, message: &'static str) -> Self {
        Self {
            status,
            title,
            message,
        }
    }

    /// The page for a session error, with [`Error::status`]: `409` where
    /// trying again succeeds, `500` otherwise.
    fn session(error: &Error, step: Step) -> Self {
        let status = error.status();
        let retry = "Not saved";
        let (title, message) = match error.kind() {
            ErrorKind::Conflict => (
                retry,
                "Your session changed in another tab while this was being saved; \
                 please try again.",
            ),
            ErrorKind::IdRotated => (
                retry,
                "You signed in from another tab just as this was being saved, so it \
                 was not saved; please try again.",
            ),
            ErrorKind::SessionGone => (
                retry,
                "Your session ended in another tab (signed out, or signed in anew) \
                 while this was being saved, so it was not saved; please try again.",
            ),
            ErrorKind::Store | ErrorKind::Timeout | ErrorKind::Capacity => (
                "Something went wrong",
                match step {
                    Step::Load => {
                        "The shop cannot reach its session store, so your session could \
                         not be loaded; please try again in a moment."
                    }
                    Step::Handle | Step::Save => {
                        "The shop cannot reach its session store, so this was not saved; \
                         please try again in a moment."
                    }
                },
            ),
            // Kinds this demo does not know yet: a 409 is one that trying
            // again resolves.
            _ if status == StatusCode::CONFLICT => (
                retry,
                "Another tab changed your session while this was being saved, so it \
                 was not saved; please try again.",
            ),
            _ => (
                "Something went wrong",
                "Something went wrong with your session, so this was not done; \
                 please try again later.",
            ),
        };
        Self::new(status, title, message)
    }
}

/// Rewrites the `409` page of a page view (`GET`, `HEAD`) that lost its
/// save to another tab: a page view changes only the visit count and the
/// flash message, so nothing the visitor did was lost, and telling them to
/// "try again" would have them repeat what they did before, such as the
/// add-to-cart that redirected here and was saved.
async fn page_view_conflicts(request: Request, next: Next) -> Response {
    let page_view = matches!(*request.method(), Method::GET | Method::HEAD);
    let response = next.run(request).await;
    if page_view && response.status() == StatusCode::CONFLICT {
        return Problem::new(
            StatusCode::CONFLICT,
            "Out of date",
            "Another tab changed your session (signing in, say) while this page \
             was loading, so it may be out of date; please reload it.",
        )
        .into_response();
    }
    response
}

/// A handler's failed session call.
impl From<Error> for Problem {
    fn from(error: Error) -> Self {
        Self::session(&error, Step::Handle)
    }
}

impl From<SessionRejection> for Problem {
    fn from(rejection: SessionRejection) -> Self {
        match rejection {
            SessionRejection::Load(error) => Self::session(&error, Step::Load),
            // The route is not behind the layer: a bug of the demo's own.
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "This page cannot use sessions; please start again from the home page.",
            ),
        }
    }
}

impl From<FormRejection> for Problem {
    fn from(rejection: FormRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                status,
                "Form too large",
                "That form was too large for the shop to accept, so nothing was \
                 changed; please go back and send less.",
            )
        } else if status.is_client_error() {
            // 400, 415 or 422: not a form of this shop, or a field missing.
            Self::new(
                status,
                "Form not understood",
                "The shop could not read that form, so nothing was changed; please \
                 go back and try again.",
            )
        } else {
            Self::new(
                status,
                "Something went wrong",
                "The shop could not read that form, so nothing was changed; please \
                 try again later.",
            )
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let page = layout(&Layout {
            title: self.title,
            page: "problem",
            cart_items: None,
            status: "",
            flash: Some((true, self.message)),
            main: "<p><a href=/ id=home-link>Back to the home page</a></p>",
            footer: "session-layer demo",
        });
        (self.status, page).into_response()
    }
}

/// The [`Session`] extractor whose rejection (the store failed to load the
/// session) is a [`Problem`] page.
struct ShopSession(Session);

impl<S: Send + Sync> FromRequestParts<S> for ShopSession {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Ok(Self(Session::from_request_parts(parts, state).await?))
    }
}

/// axum's `Form` extractor whose rejection (a body over axum's 2 MB limit, not
/// a form, or a field missing) is a [`Problem`] page.
struct Form<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Form<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let axum::Form(form) = axum::Form::<T>::from_request(request, state).await?;
        Ok(Self(form))
    }
}

// ---------------------------------------------------------------------------
// Helpers

/// Formats euro cents as `€4.50`.
fn euros(cents: impl Into<u64>) -> String {
    let cents = cents.into();
    format!("&euro;{}.{:02}", cents / 100, cents % 100)
}

/// Escapes text for HTML content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}
