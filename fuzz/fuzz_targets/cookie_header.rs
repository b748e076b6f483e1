//! Fuzzes the strict `Cookie` header parser and the cookie verifier.
//!
//! The input is one or more `Cookie` header lines separated by `\n`. Before
//! parsing, these markers are replaced by real cookie values, so the fuzzer
//! can place validly signed cookies anywhere among its junk:
//!
//! | marker | value |
//! |---|---|
//! | `{P}` | id `A`, signed by the primary key |
//! | `{Q}` | id `B`, signed by the primary key |
//! | `{F}` | id `C`, signed by the fallback key |
//! | `{O}` | id `A`, signed by a key the layer does not hold |
//! | `{N}` | id `A`, signed by the primary key for another cookie name |
//!
//! Checked on every input, besides "no panic":
//!
//! - the work is bounded: at most `MAX_CANDIDATES` values reach the MAC;
//! - the result is exactly what an independent reference gives: the first of
//!   the first `MAX_CANDIDATES` cookies named `id` whose value is one of the
//!   three signed values (`{P}`, `{Q}`, `{F}`); so no other value verifies,
//!   and a forgery would show up as a disagreement;
//! - a value that decodes is the canonical encoding of what it decodes to.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use session_layer::__fuzz::{self, MAX_CANDIDATES, Verifier};
use session_layer::{Id, Key};

const NAME: &str = "id";
const A: Id = Id::from_bytes([0xA1; 16]);
const B: Id = Id::from_bytes([0xB2; 16]);
const C: Id = Id::from_bytes([0xC3; 16]);

struct Fixture {
    /// The layer's verifier: primary key 1, fallback key 2.
    layer: Verifier,
    /// The values that may verify, with the id and whether the fallback key
    /// signed them: `{P}`, `{Q}` and `{F}`.
    signed: [(Vec<u8>, Id, bool); 3],
    markers: [(&'static [u8], Vec<u8>); 5],
}

fn key(byte: u8) -> Key {
    Key::from_bytes(&[byte; 32]).expect("32 bytes make a key")
}

impl Fixture {
    fn new() -> Self {
        let layer = Verifier::new(&key(1), &[key(2)], NAME);
        let primary = Verifier::new(&key(1), &[], NAME);
        let fallback = Verifier::new(&key(2), &[], NAME);
        let other = Verifier::new(&key(3), &[], NAME);
        let other_name = Verifier::new(&key(1), &[], "sid");
        let signed = [
            (primary.sign(&A).into_bytes(), A, false),
            (primary.sign(&B).into_bytes(), B, false),
            (fallback.sign(&C).into_bytes(), C, true),
        ];
        let markers = [
            (&b"{P}"[..], primary.sign(&A).into_bytes()),
            (&b"{Q}"[..], primary.sign(&B).into_bytes()),
            (&b"{F}"[..], fallback.sign(&C).into_bytes()),
            (&b"{O}"[..], other.sign(&A).into_bytes()),
            (&b"{N}"[..], other_name.sign(&A).into_bytes()),
        ];
        Self {
            layer,
            signed,
            markers,
        }
    }

    /// Replaces every marker with its cookie value.
    fn expand(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        let mut rest = data;
        'outer: while let Some((&first, tail)) = rest.split_first() {
            for (marker, value) in &self.markers {
                if let Some(after) = rest.strip_prefix(*marker) {
                    out.extend_from_slice(value);
                    rest = after;
                    continue 'outer;
                }
            }
            out.push(first);
            rest = tail;
        }
        out
    }

    /// The independent reference: which id should verify, and whether a
    /// cookie named `id` was there at all.
    ///
    /// It knows the three signed values and nothing else, on purpose. A
    /// reference that signed each candidate and compared the result with
    /// `==` would hand the expected tag to the fuzzer (libFuzzer watches
    /// comparisons), which then "forges" a cookie against the harness within
    /// minutes; it did, before this was changed. The layer compares tags in
    /// constant time, which gives the fuzzer nothing to learn from.
    fn reference(&self, lines: &[HeaderValue]) -> (Option<(Id, bool)>, bool) {
        let mut seen = 0;
        for line in lines {
            for pair in line.as_bytes().split(|&byte| byte == b';') {
                let pair = pair.trim_ascii();
                let Some(eq) = pair.iter().position(|&byte| byte == b'=') else {
                    continue;
                };
                let (name, value) = (&pair[..eq], &pair[eq + 1..]);
                if name != NAME.as_bytes() {
                    continue;
                }
                seen += 1;
                if seen > MAX_CANDIDATES {
                    return (None, true);
                }
                if let Some((_, id, by_fallback)) =
                    self.signed.iter().find(|(signed, ..)| signed == value)
                {
                    return (Some((*id, *by_fallback)), true);
                }
            }
        }
        (None, seen > 0)
    }
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static FIXTURE: Fixture = Fixture::new();
    }
    FIXTURE.with(|fixture| check(fixture, data));
});

fn check(fixture: &Fixture, data: &[u8]) {
    let expanded = fixture.expand(data);
    // A line a client could not send (control bytes) is dropped, as hyper
    // would refuse the request.
    let lines: Vec<HeaderValue> = expanded
        .split(|&byte| byte == b'\n')
        .filter_map(|line| HeaderValue::from_bytes(line).ok())
        .collect();

    let outcome = fixture.layer.find(&lines);
    assert!(
        outcome.verifications <= MAX_CANDIDATES,
        "{} MAC checks for one request",
        outcome.verifications
    );
    let (expected, named) = fixture.reference(&lines);
    assert_eq!(
        outcome.id.map(|id| (id, outcome.by_fallback)),
        expected,
        "the parser disagrees with the reference"
    );
    assert_eq!(outcome.named, named);

    // Every value that decodes is canonical: re-encoding gives it back.
    for line in &lines {
        for pair in line.as_bytes().split(|&byte| byte == b';') {
            let value = pair
                .iter()
                .position(|&byte| byte == b'=')
                .map_or(pair, |eq| &pair[eq + 1..]);
            if let Some((id, tag)) = __fuzz::decode(value) {
                let mut raw = id.as_bytes().to_vec();
                raw.extend_from_slice(&tag);
                assert_eq!(URL_SAFE_NO_PAD.encode(raw).as_bytes(), value);
            }
        }
    }
}
