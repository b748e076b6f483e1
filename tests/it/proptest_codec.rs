//! Property tests of the strict `Cookie` header parser and the cookie value
//! codec: junk never panics, never reaches the store, and costs a bounded
//! number of MAC checks.
//!
//! Two levels:
//!
//! - through the public API: a real `Router` behind the real layer, on a store
//!   that records every id it is asked to load. Whatever the `Cookie` header
//!   lines hold, the request answers `200`, the store is asked for exactly the
//!   id of the one validly signed cookie hidden among the junk, or for nothing
//!   at all, and no record is created;
//! - through the `_fuzzing` feature's hook (`session_layer::__fuzz`), which runs
//!   the same parser and verifier and counts the MAC checks, so the work one
//!   request can cause is asserted, not timed.
//!
//! A failing case prints proptest's minimal input, and its seed is saved in
//! `tests/proptest-regressions/proptest_codec.txt`, replayed first on every run
//! (commit that file with the fix).

use std::sync::{Arc, Mutex, PoisonError};

use crate::support;
use crate::support::{App, Call, Hook, Op, Wrapped, key};
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use proptest::prelude::*;
use session_layer::{Error, Id, MemoryStore, SessionLayer};

/// The most cookies named like the session cookie that the layer checks
/// (`codec::MAX_CANDIDATES`; the hook tests below assert the two agree).
const MAX_CANDIDATES: usize = 8;

/// Wraps a store and records the id of every `load`.
type RecordingStore = Wrapped<MemoryStore, Loads>;

/// The ids loaded so far, shared by the store's clones.
#[derive(Clone, Default)]
struct Loads(Arc<Mutex<Vec<Id>>>);

impl RecordingStore {
    fn take_loads(&self) -> Vec<Id> {
        std::mem::take(&mut *self.hook().0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Hook for Loads {
    async fn around<T: Send>(&self, op: Op, id: &Id, call: impl Call<T>) -> Result<T, Error> {
        if op == Op::Load {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(*id);
        }
        call.await
    }
}

/// One piece of a `Cookie` header line; pieces are joined with `"; "`.
#[derive(Debug, Clone)]
enum Piece {
    /// Any bytes a header value may hold (a client cannot send the others).
    Raw(Vec<u8>),
    /// `name=value` with a random name and value.
    Pair(String, Vec<u8>),
    /// A near miss on the valid cookie (see [`Forgery`]).
    Forged(Forgery),
    /// The validly signed session cookie, `id=<value>`.
    Valid,
}

#[derive(Debug, Clone)]
enum Forgery {
    /// One character of the value replaced by another base64url character.
    Flip(usize, u8),
    /// The value cut short.
    Truncated(usize),
    /// The value with bytes added at the end.
    Extended(Vec<u8>),
    /// The value under a near-miss name (`ID`, `xid`, `id `, …).
    Renamed(&'static str),
    /// A value signed by another key, or for another cookie name.
    Foreign(usize),
}

const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Bytes a `HeaderValue` accepts (a client cannot send the others): tab, and
/// everything from space up but DEL. Control bytes are moved into the
/// printable range rather than filtered out, which keeps generation cheap.
fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(|mut bytes| {
        for byte in &mut bytes {
            if (*byte < 0x20 && *byte != b'\t') || *byte == 0x7f {
                *byte ^= 0x40;
            }
        }
        bytes
    })
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        3 => header_bytes(40).prop_map(Piece::Raw),
        3 => ("(id|ID|Id|xid|idx|[a-z_]{0,6})", header_bytes(70))
            .prop_map(|(name, value)| Piece::Pair(name, value)),
        1 => (0..64usize, 0..64usize).prop_map(|(at, with)| {
            Piece::Forged(Forgery::Flip(at, BASE64URL.get(with).copied().unwrap_or(b'A')))
        }),
        1 => (0..64usize).prop_map(|len| Piece::Forged(Forgery::Truncated(len))),
        1 => header_bytes(4)
            .prop_filter("adds something", |tail| !tail.is_empty())
            .prop_map(|tail| Piece::Forged(Forgery::Extended(tail))),
        1 => prop::sample::select(vec!["ID", "xid", "idx", "id ", " id", "i d", "\"id\""])
            .prop_map(|name| Piece::Forged(Forgery::Renamed(name))),
        1 => (0..2usize).prop_map(|which| Piece::Forged(Forgery::Foreign(which))),
    ]
}

/// Header lines made of pieces, with the valid cookie at `valid_at` (a piece
/// index over all lines) or nowhere.
fn lines_with_valid() -> impl Strategy<Value = Vec<Vec<Piece>>> {
    (
        prop::collection::vec(prop::collection::vec(piece(), 0..12), 1..5),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(mut lines, at, include)| {
            if include {
                let total: usize = lines.iter().map(Vec::len).sum();
                let mut at = at.index(total + 1);
                for line in &mut lines {
                    if at <= line.len() {
                        line.insert(at, Piece::Valid);
                        break;
                    }
                    at -= line.len() + 1;
                }
            }
            lines
        })
}

/// What the pieces stand for, once the valid value is known.
struct Cookies {
    valid: String,
    /// Values signed by another key, and for another cookie name.
    foreign: [String; 2],
}

impl Cookies {
    fn render(&self, lines: &[Vec<Piece>]) -> Vec<HeaderValue> {
        lines
            .iter()
            .filter_map(|pieces| {
                let mut bytes = Vec::new();
                for (i, piece) in pieces.iter().enumerate() {
                    if i > 0 {
                        bytes.extend_from_slice(b"; ");
                    }
                    self.render_piece(piece, &mut bytes);
                }
                HeaderValue::from_bytes(&bytes).ok()
            })
            .collect()
    }

    fn render_piece(&self, piece: &Piece, out: &mut Vec<u8>) {
        let valid = self.valid.as_bytes();
        match piece {
            Piece::Raw(bytes) => out.extend_from_slice(bytes),
            Piece::Pair(name, value) => {
                out.extend_from_slice(name.as_bytes());
                out.push(b'=');
                out.extend_from_slice(value);
            }
            Piece::Valid => {
                out.extend_from_slice(b"id=");
                out.extend_from_slice(valid);
            }
            Piece::Forged(forgery) => {
                let (name, value): (&str, Vec<u8>) = match forgery {
                    Forgery::Flip(at, with) => {
                        let mut value = valid.to_vec();
                        if let Some(byte) = value.get_mut(*at) {
                            // Always a change: a different base64url byte.
                            *byte = if byte == with { b'.' } else { *with };
                        }
                        ("id", value)
                    }
                    Forgery::Truncated(len) => ("id", valid.get(..*len).unwrap_or(valid).to_vec()),
                    Forgery::Extended(tail) => ("id", [valid, tail].concat()),
                    Forgery::Renamed(name) => (name, valid.to_vec()),
                    Forgery::Foreign(which) => (
                        "id",
                        self.foreign
                            .get(*which)
                            .map(|value| value.as_bytes().to_vec())
                            .unwrap_or_default(),
                    ),
                };
                out.extend_from_slice(name.as_bytes());
                out.push(b'=');
                out.extend_from_slice(&value);
            }
        }
    }
}

/// The reference: `Some(())` if the valid value is among the first
/// [`MAX_CANDIDATES`] cookies named exactly `id`, across all lines in order.
/// Every other value named `id` is invalid by construction.
fn valid_is_within_the_bound(lines: &[HeaderValue], valid: &[u8]) -> bool {
    let mut named = 0;
    for line in lines {
        for pair in line.as_bytes().split(|&byte| byte == b';') {
            let pair = pair.trim_ascii();
            let Some(eq) = pair.iter().position(|&byte| byte == b'=') else {
                continue;
            };
            let (name, value) = pair.split_at(eq);
            if name != b"id" {
                continue;
            }
            named += 1;
            if named > MAX_CANDIDATES {
                return false;
            }
            if value.get(1..) == Some(valid) {
                return true;
            }
        }
    }
    false
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: App,
    store: RecordingStore,
    cookies: Cookies,
    id: Id,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let store = RecordingStore::default();
    let app = App::new(SessionLayer::new(store.clone(), key(1)));
    let (valid, foreign) = runtime.block_on(async {
        let valid = app.start_session().await;
        let other_key = App::new(SessionLayer::new(MemoryStore::default(), key(2)))
            .start_session()
            .await;
        let other_name = App::named(
            SessionLayer::builder(store.inner().clone(), key(1))
                .cookie_name("sid")
                .build()
                .expect("a valid configuration"),
            "sid",
        )
        .start_session()
        .await;
        (valid, [other_key, other_name])
    });
    store.take_loads();
    let id = support::id_of(&valid);
    Fixture {
        runtime,
        app,
        store,
        cookies: Cookies { valid, foreign },
        id,
    }
}

/// One fixture per property, shared by its cases: starting a session for
/// every case would only slow the property down. Each property has its own,
/// so that properties running in parallel do not see each other's loads.
macro_rules! fixture_once {
    () => {{
        static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
        FIXTURE.get_or_init(fixture)
    }};
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever surrounds it, the one validly signed cookie is found if it is
    /// within the candidate bound, and then the store is asked for exactly its
    /// id, once; otherwise the store is not asked at all. Nothing panics,
    /// nothing is created, no cookie is set.
    #[test]
    fn through_the_layer_only_the_signed_id_ever_reaches_the_store(
        lines in lines_with_valid(),
    ) {
        let fixture = fixture_once!();
        let headers = fixture.cookies.render(&lines);
        let expect_valid = valid_is_within_the_bound(&headers, fixture.cookies.valid.as_bytes());
        let records = fixture.store.inner().len();

        let reply = fixture
            .runtime
            .block_on(fixture.app.get_with_cookie_lines("/get/k", headers));

        prop_assert_eq!(reply.status, StatusCode::OK);
        prop_assert_eq!(reply.body.as_str(), if expect_valid { "v" } else { "<none>" });
        prop_assert!(reply.headers.get(SET_COOKIE).is_none(), "{:?}", reply.headers);
        let loads = fixture.store.take_loads();
        if expect_valid {
            prop_assert_eq!(loads, vec![fixture.id]);
        } else {
            prop_assert!(loads.is_empty(), "loaded {} ids", loads.len());
        }
        prop_assert_eq!(fixture.store.inner().len(), records);
    }

    /// Raw bytes, in any number of `Cookie` lines, through the layer: always
    /// anonymous, never a load.
    #[test]
    fn through_the_layer_random_bytes_are_anonymous(
        lines in prop::collection::vec(header_bytes(300), 0..6),
        prefix in any::<bool>(),
    ) {
        let fixture = fixture_once!();
        let headers: Vec<HeaderValue> = lines
            .iter()
            .filter_map(|line| {
                let line = if prefix { [b"id=".as_slice(), line].concat() } else { line.clone() };
                HeaderValue::from_bytes(&line).ok()
            })
            .collect();
        let reply = fixture
            .runtime
            .block_on(fixture.app.get_with_cookie_lines("/get/k", headers));
        prop_assert_eq!(reply.status, StatusCode::OK);
        prop_assert_eq!(reply.body.as_str(), "<none>");
        prop_assert!(reply.headers.get(SET_COOKIE).is_none());
        prop_assert!(fixture.store.take_loads().is_empty());
    }
}

/// Properties of the parser and the codec on their own, with the MAC checks
/// counted (feature `_fuzzing`).
#[cfg(feature = "_fuzzing")]
mod hook {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use session_layer::__fuzz::{self, Outcome, VALUE_LEN, Verifier};

    fn layer() -> Verifier {
        Verifier::new(&key(1), &[key(2)], "id")
    }

    fn lines(raw: &[Vec<u8>]) -> Vec<HeaderValue> {
        raw.iter()
            .filter_map(|line| HeaderValue::from_bytes(line).ok())
            .collect()
    }

    #[test]
    fn the_bound_is_the_one_the_tests_assume() {
        assert_eq!(__fuzz::MAX_CANDIDATES, MAX_CANDIDATES);
        assert_eq!(VALUE_LEN, 64);
    }

    /// `n` decodable but forged values: exactly `min(n, bound)` checks, so
    /// the count is real and the bound is reached, never passed.
    #[test]
    fn checks_grow_with_the_candidates_up_to_the_bound_and_no_further() {
        let forged = Verifier::new(&key(9), &[], "id").sign(&Id::from_bytes([7; 16]));
        for n in [0, 1, 2, 7, 8, 9, 100, 10_000] {
            let line = vec![format!("id={forged}"); n].join("; ");
            let outcome = layer().find(&lines(&[line.into_bytes()]));
            assert_eq!(
                outcome.verifications,
                n.min(MAX_CANDIDATES),
                "{n} candidates"
            );
            assert_eq!(outcome.id, None);
            assert_eq!(outcome.named, n > 0);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any bytes in any number of lines: no panic, at most
        /// `MAX_CANDIDATES` MAC checks, and nothing verifies.
        #[test]
        fn any_bytes_cost_at_most_the_bound_and_never_verify(
            raw in prop::collection::vec(header_bytes(600), 0..8),
        ) {
            let outcome = layer().find(&lines(&raw));
            prop_assert!(outcome.verifications <= MAX_CANDIDATES);
            prop_assert_eq!(outcome.id, None);
        }

        /// The same with every line made of `id=` pairs, so that far more
        /// candidates than the bound reach the parser.
        #[test]
        fn any_number_of_named_candidates_cost_at_most_the_bound(
            values in prop::collection::vec(header_bytes(80), 0..100),
            split in 1..20usize,
        ) {
            let pairs: Vec<Vec<u8>> = values
                .iter()
                .map(|value| [b"id=".as_slice(), value].concat())
                .collect();
            let raw: Vec<Vec<u8>> = pairs.chunks(split).map(|chunk| chunk.join(&b"; "[..])).collect();
            let outcome = layer().find(&lines(&raw));
            prop_assert!(outcome.verifications <= MAX_CANDIDATES);
            prop_assert_eq!(outcome.id, None);
            prop_assert_eq!(outcome.named, !lines(&raw).is_empty());
        }

        /// A signed cookie among junk: exactly its id when it is within the
        /// bound, nothing otherwise; never another id.
        #[test]
        fn a_signed_cookie_among_junk_gives_exactly_its_id_or_nothing(
            lines_of_pieces in lines_with_valid(),
            id in any::<[u8; 16]>(),
        ) {
            let id = Id::from_bytes(id);
            let verifier = layer();
            // Key 2 is the layer's fallback here: foreign values use key 3.
            let other = Id::from_bytes([0x55; 16]);
            let cookies = Cookies {
                valid: verifier.sign(&id),
                foreign: [
                    Verifier::new(&key(3), &[], "id").sign(&other),
                    Verifier::new(&key(1), &[], "sid").sign(&other),
                ],
            };
            let headers = cookies.render(&lines_of_pieces);
            let outcome = verifier.find(&headers);
            let expected = valid_is_within_the_bound(&headers, cookies.valid.as_bytes())
                .then_some(id);
            prop_assert_eq!(outcome.id, expected);
            prop_assert!(!outcome.by_fallback);
            prop_assert!(outcome.verifications <= MAX_CANDIDATES);
        }

        /// 48 random bytes, canonically encoded: they decode (so the MAC is
        /// really checked), and never verify.
        #[test]
        fn random_values_decode_but_never_verify(raw in any::<[u8; 48]>()) {
            let value = URL_SAFE_NO_PAD.encode(raw);
            prop_assert!(__fuzz::decode(value.as_bytes()).is_some());
            let outcome = layer().find(&lines(&[format!("id={value}").into_bytes()]));
            prop_assert_eq!(outcome, Outcome { id: None, by_fallback: false, named: true, verifications: 1 });
        }

        /// Any change of one byte of a valid value is refused.
        #[test]
        fn any_one_byte_change_is_refused(
            id in any::<[u8; 16]>(),
            at in 0..64usize,
            byte in 0x20u8..0x7f,
        ) {
            let verifier = layer();
            let mut value = verifier.sign(&Id::from_bytes(id)).into_bytes();
            prop_assume!(value.get(at) != Some(&byte) && byte != b';');
            if let Some(slot) = value.get_mut(at) {
                *slot = byte;
            }
            let line = [b"id=".as_slice(), &value].concat();
            prop_assert_eq!(verifier.find(&lines(&[line])).id, None);
        }

        /// The codec: every signed value is 64 characters and decodes to its
        /// id; a value decodes if and only if it is 64 characters of the
        /// base64url alphabet (48 bytes, no spare bits, no padding), and then
        /// it is the canonical encoding of what it decodes to.
        #[test]
        fn the_codec_round_trips_and_accepts_only_the_canonical_form(
            id in any::<[u8; 16]>(),
            text in prop_oneof![
                "[A-Za-z0-9_-]{64}",
                "[A-Za-z0-9_-]{30}[=+/. ]?[A-Za-z0-9_-]{33}",
                "[A-Za-z0-9_=+/.-]{60,68}",
                "[A-Za-z0-9_-]{0,100}",
            ],
        ) {
            let id = Id::from_bytes(id);
            let value = layer().sign(&id);
            prop_assert_eq!(value.len(), VALUE_LEN);
            let decoded = __fuzz::decode(value.as_bytes()).map(|(decoded, _tag)| decoded);
            prop_assert_eq!(decoded, Some(id));

            let canonical_shape = text.len() == VALUE_LEN
                && text.bytes().all(|byte| BASE64URL.contains(&byte));
            let decoded = __fuzz::decode(text.as_bytes());
            prop_assert_eq!(decoded.is_some(), canonical_shape, "{}", text);
            if let Some((id, tag)) = decoded {
                let raw = [id.as_bytes().as_slice(), &tag].concat();
                prop_assert_eq!(URL_SAFE_NO_PAD.encode(raw), text);
            }
        }

        /// A value signed by the fallback key verifies as such; one signed by
        /// a key outside the ring, or for another cookie name, does not.
        #[test]
        fn only_keys_of_the_ring_verify_and_the_fallback_is_reported(id in any::<[u8; 16]>()) {
            let id = Id::from_bytes(id);
            let verifier = layer();
            let find = |value: String| verifier.find(&lines(&[format!("id={value}").into_bytes()]));

            let by_fallback = find(Verifier::new(&key(2), &[], "id").sign(&id));
            prop_assert_eq!((by_fallback.id, by_fallback.by_fallback), (Some(id), true));
            let by_primary = find(Verifier::new(&key(1), &[], "id").sign(&id));
            prop_assert_eq!((by_primary.id, by_primary.by_fallback), (Some(id), false));
            prop_assert_eq!(find(Verifier::new(&key(3), &[], "id").sign(&id)).id, None);
            prop_assert_eq!(find(Verifier::new(&key(1), &[], "sid").sign(&id)).id, None);
        }
    }
}
