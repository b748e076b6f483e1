//! Run with: cargo run --example demo
//!
//! The session-layer demo: a small shop with real pages and forms. Sign in
//! and out (with "remember me"), count your visits, fill a cart that follows
//! you from page to page, and read the flash message each action leaves.
//! Open http://127.0.0.1:3000.
//!
//! It needs no setup: sessions live in the built-in `MemoryStore`. Options,
//! where a flag wins over its environment variable:
//!
//! | flag | variable | meaning |
//! |---|---|---|
//! | `--addr ADDR` | `DEMO_ADDR` | the address to listen on (default `127.0.0.1:3000`) |
//! | `--store URL` | `SESSION_STORE_URL` | `memory` (default), `redis://…`, `postgres://…` or `sqlite:…`; each needs its store's feature, e.g. `cargo run --example demo --features redis-store -- --store redis://127.0.0.1` |
//! | | `SESSION_KEY` | the signing key, at least 32 bytes, in hex or base64; without it a random key is generated and sessions end when the demo stops |
//!
//! The cookie stays `Secure`: Chrome and Firefox store and send secure
//! cookies over plain `http://` to `127.0.0.1` and `localhost`, which they
//! treat as secure contexts. Safari does not (WebKit bug 281149): it drops
//! the cookie silently, so open the demo in Chrome or Firefox. To reach the
//! demo from another machine, serve it over HTTPS.

mod app;
mod store;

use std::env;
use std::net::SocketAddr;
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use session_layer::Key;

const DEFAULT_ADDR: &str = "127.0.0.1:3000";

const USAGE: &str = "\
usage: cargo run --example demo -- [--addr ADDR] [--store URL]

  --addr ADDR   listen on ADDR (or DEMO_ADDR; default 127.0.0.1:3000)
  --store URL   keep sessions in: memory (default), redis://..., postgres://...,
                sqlite:... (or SESSION_STORE_URL)

  SESSION_KEY   signing key, at least 32 bytes, hex or base64; random if unset";

/// The demo's settings, from the command line and the environment.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    addr: String,
    store: Option<String>,
}

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Run(Options),
    Help,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("demo: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let options = match parse_args(env::args().skip(1), |name| env::var(name).ok())? {
        Command::Run(options) => options,
        Command::Help => {
            println!("{USAGE}");
            return Ok(());
        }
    };
    let (key, generated) = match env::var("SESSION_KEY") {
        Ok(text) => (parse_key(&text)?, false),
        Err(env::VarError::NotPresent) => (Key::generate().map_err(|e| e.to_string())?, true),
        Err(env::VarError::NotUnicode(_)) => {
            return Err("SESSION_KEY is not valid UTF-8: give it in hex or base64".to_owned());
        }
    };
    let store = store::open(options.store.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let app = app::app(store.store, key).map_err(|e| e.to_string())?;

    let listener = tokio::net::TcpListener::bind(&options.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "session-layer demo: open {} (store: {})",
        url_to_open(addr),
        store.description
    );
    if generated {
        println!(
            "note: SESSION_KEY is not set, so a random key signs the cookies and every \
             session ends when the demo stops"
        );
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            // If Ctrl-C cannot be watched, run until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await
        .map_err(|e| format!("server error: {e}"))
}

/// Reads `--addr`, `--store` and `--help` (as `--flag value` or
/// `--flag=value`), falling back on `DEMO_ADDR` and `SESSION_STORE_URL`.
fn parse_args(
    args: impl IntoIterator<Item = String>,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    let mut addr = None;
    let mut store = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value)),
            _ => (arg.clone(), None),
        };
        let slot = match flag.as_str() {
            "--addr" => &mut addr,
            "--store" => &mut store,
            "-h" | "--help" => return Ok(Command::Help),
            _ => return Err(format!("unknown argument `{arg}`\n\n{USAGE}")),
        };
        let value = match inline {
            Some(value) => value.to_owned(),
            None => args
                .next()
                .ok_or_else(|| format!("`{flag}` needs a value\n\n{USAGE}"))?,
        };
        *slot = Some(value);
    }
    Ok(Command::Run(Options {
        addr: addr
            .or_else(|| var("DEMO_ADDR"))
            .unwrap_or_else(|| DEFAULT_ADDR.to_owned()),
        store: store.or_else(|| var("SESSION_STORE_URL")),
    }))
}

/// Decodes `SESSION_KEY`: hex (when every character is a hex digit) or
/// base64 (standard or URL-safe alphabet, padding optional), at least
/// [`Key::MIN_LEN`] bytes once decoded.
fn parse_key(text: &str) -> Result<Key, String> {
    let text = text.trim();
    let bytes = if text.chars().all(|c| c.is_ascii_hexdigit()) {
        decode_hex(text).ok_or("SESSION_KEY: hex needs an even number of digits")?
    } else {
        let unpadded = text.trim_end_matches('=');
        STANDARD_NO_PAD
            .decode(unpadded)
            .or_else(|_| URL_SAFE_NO_PAD.decode(unpadded))
            .map_err(|_| "SESSION_KEY is neither hex nor base64")?
    };
    Key::from_bytes(&bytes).map_err(|_| {
        format!(
            "SESSION_KEY holds {} bytes; a key needs at least {} \
             (e.g. `openssl rand -base64 32`)",
            bytes.len(),
            Key::MIN_LEN
        )
    })
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(pair, 16).ok()
        })
        .collect()
}

/// Returns the URL to open for a listening address: `0.0.0.0` and `::`
/// listen everywhere, but the browser on this machine goes to loopback.
fn url_to_open(mut addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|&arg| arg.to_owned()).collect()
    }

    fn run_with(list: &[&str], vars: &[(&str, &str)]) -> Result<Command, String> {
        parse_args(args(list), |name| {
            vars.iter()
                .find(|(var, _)| *var == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn flags_win_over_the_environment() {
        let vars = [
            ("DEMO_ADDR", "0.0.0.0:80"),
            ("SESSION_STORE_URL", "redis://r"),
        ];
        assert_eq!(
            run_with(&[], &vars),
            Ok(Command::Run(Options {
                addr: "0.0.0.0:80".into(),
                store: Some("redis://r".into()),
            }))
        );
        assert_eq!(
            run_with(&["--addr", "127.0.0.1:4000", "--store=memory"], &vars),
            Ok(Command::Run(Options {
                addr: "127.0.0.1:4000".into(),
                store: Some("memory".into()),
            }))
        );
        assert_eq!(
            run_with(&[], &[]),
            Ok(Command::Run(Options {
                addr: DEFAULT_ADDR.into(),
                store: None,
            }))
        );
        assert_eq!(run_with(&["--help"], &[]), Ok(Command::Help));
        assert!(run_with(&["--addr"], &[]).is_err());
        assert!(run_with(&["--port", "1"], &[]).is_err());
    }

    #[test]
    fn keys_are_hex_or_base64_and_long_enough() {
        assert!(parse_key(&"ab".repeat(32)).is_ok());
        assert!(parse_key(&"ab".repeat(31)).is_err());
        assert!(
            parse_key(&"abc".repeat(21)).is_err(),
            "odd number of hex digits"
        );
        let bytes: Vec<u8> = (0..=255).step_by(7).collect();
        assert!(bytes.len() >= Key::MIN_LEN);
        assert!(parse_key(&base64::engine::general_purpose::STANDARD.encode(&bytes)).is_ok());
        assert!(parse_key(&URL_SAFE_NO_PAD.encode(&bytes)).is_ok());
        assert!(parse_key(&URL_SAFE_NO_PAD.encode([1; 31])).is_err());
        assert!(parse_key("not a key!").is_err());
    }

    #[test]
    fn the_url_to_open_is_on_loopback() {
        let any: SocketAddr = "0.0.0.0:3000".parse().expect("an address");
        assert_eq!(url_to_open(any), "http://127.0.0.1:3000");
        let v6: SocketAddr = "[::]:3000".parse().expect("an address");
        assert_eq!(url_to_open(v6), "http://[::1]:3000");
    }
}
