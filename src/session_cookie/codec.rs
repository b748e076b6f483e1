//! The cookie value (`base64url(id ‖ tag)`) and the strict `Cookie` header
//! parser: exact name match, several header lines, neighbours that are not
//! UTF-8, a bound on the candidates checked, and only the canonical encoding.
//!
//! Parsing works on bytes: the session cookie is ASCII, and another cookie
//! that is not UTF-8 must not hide it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;

use crate::id::{ID_LEN, Id};
use crate::key::{KeyRing, TAG_LEN, Verified};

/// The length of an encoded cookie value: 48 bytes in unpadded base64.
///
/// 48 is a multiple of 3, so every valid value has exactly this length and
/// no spare bits: the encoding is canonical by construction.
pub(crate) const VALUE_LEN: usize = (ID_LEN + TAG_LEN) / 3 * 4;

/// How many cookies carrying the session name are checked, at most.
///
/// A browser sends a handful at most (one per path or domain); the bound keeps
/// a forged header of thousands from costing thousands of MACs.
pub(crate) const MAX_CANDIDATES: usize = 8;

/// Returns the cookie value for `id` signed by the ring's primary key.
pub(crate) fn encode(id: &Id, ring: &KeyRing) -> String {
    let mut raw = [0; ID_LEN + TAG_LEN];
    let (id_part, tag_part) = raw.split_at_mut(ID_LEN);
    id_part.copy_from_slice(id.as_bytes());
    tag_part.copy_from_slice(&ring.sign(id));
    URL_SAFE_NO_PAD.encode(raw)
}

/// Splits a cookie value into id and tag, refusing anything but the canonical
/// encoding. The length is checked before any decoding work.
pub(crate) fn decode(value: &[u8]) -> Option<(Id, [u8; TAG_LEN])> {
    if value.len() != VALUE_LEN {
        return None;
    }
    let mut raw = [0; ID_LEN + TAG_LEN];
    match URL_SAFE_NO_PAD.decode_slice(value, &mut raw) {
        Ok(len) if len == raw.len() => {}
        _ => return None,
    }
    let (id, tag) = raw.split_at(ID_LEN);
    Some((Id::from_bytes(id.try_into().ok()?), tag.try_into().ok()?))
}

/// Yields the values of every cookie named exactly `name`, in header order,
/// across all `Cookie` header lines.
pub(crate) fn values_named<'a>(
    headers: impl IntoIterator<Item = &'a HeaderValue>,
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .into_iter()
        .flat_map(|header| pairs(header.as_bytes()))
        .filter_map(move |pair| {
            let pair = pair.trim_ascii();
            let (pair_name, value) = pair.split_at(memchr::memchr(b'=', pair)?);
            // `value` still starts with the `=`.
            (pair_name == name.as_bytes()).then(|| value.get(1..).unwrap_or_default())
        })
}

/// Splits a header line at every `;`, as `split` does, but finds the
/// separators with `memchr` rather than one byte at a time.
fn pairs(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(line);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b';', current) {
            Some(at) => {
                rest = current.get(at + 1..);
                current.get(..at)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// The outcome of looking for the session cookie in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// No cookie carries the session name.
    Absent,
    /// Cookies carry the session name, but none verifies.
    Invalid,
    /// A cookie verified; the first one that did wins.
    Valid(Id, Verified),
}

/// Finds the session id in the request's `Cookie` headers.
pub(crate) fn find<'a>(
    headers: impl IntoIterator<Item = &'a HeaderValue>,
    name: &'a str,
    ring: &KeyRing,
) -> Found {
    find_with(headers, name, |id, tag| ring.verify(id, tag))
}

/// [`find`] with the MAC check passed in, so that the fuzz hook can count the
/// checks a header costs.
pub(crate) fn find_with<'a>(
    headers: impl IntoIterator<Item = &'a HeaderValue>,
    name: &'a str,
    mut verify: impl FnMut(&Id, &[u8; TAG_LEN]) -> Option<Verified>,
) -> Found {
    let mut found = Found::Absent;
    for value in values_named(headers, name).take(MAX_CANDIDATES) {
        found = Found::Invalid;
        if let Some((id, tag)) = decode(value) {
            if let Some(verified) = verify(&id, &tag) {
                return Found::Valid(id, verified);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Key;

    fn ring(byte: u8) -> KeyRing {
        KeyRing::new(&Key::from_bytes(&[byte; 32]).expect("key"), &[], "id")
    }

    fn header(text: &str) -> HeaderValue {
        HeaderValue::from_str(text).expect("valid header")
    }

    #[test]
    fn encode_then_find_round_trips() {
        let ring = ring(1);
        let id = Id::from_bytes([3; ID_LEN]);
        let value = encode(&id, &ring);
        assert_eq!(value.len(), VALUE_LEN);
        let headers = [header(&format!("theme=dark; id={value}; lang=en"))];
        assert_eq!(
            find(&headers, "id", &ring),
            Found::Valid(id, Verified::Primary)
        );
    }

    #[test]
    fn names_match_exactly() {
        let ring = ring(1);
        let value = encode(&Id::from_bytes([3; ID_LEN]), &ring);
        for text in [
            format!("ID={value}"),
            format!("xid={value}"),
            format!("id ={value}"),
            format!("id=\"{value}\""),
            format!("id={value}x"),
            format!("id= {value}x"),
        ] {
            assert_ne!(
                find(&[header(&text)], "id", &ring),
                Found::Valid(Id::from_bytes([3; ID_LEN]), Verified::Primary),
                "{text}"
            );
        }
    }

    #[test]
    fn several_header_lines_and_binary_neighbours() {
        let ring = ring(1);
        let id = Id::from_bytes([5; ID_LEN]);
        let value = encode(&id, &ring);
        let binary = HeaderValue::from_bytes(b"junk=\xff\xfe\x80; other=\xc3").expect("obs-text");
        let headers = [binary, header("a=b"), header(&format!("id={value}"))];
        assert_eq!(
            find(&headers, "id", &ring),
            Found::Valid(id, Verified::Primary)
        );
    }

    #[test]
    fn first_verifying_duplicate_wins() {
        let ring = ring(1);
        let first = Id::from_bytes([1; ID_LEN]);
        let second = Id::from_bytes([2; ID_LEN]);
        let forged = encode(&first, &self::ring(2));
        let headers = [header(&format!(
            "id={forged}; id={}; id={}",
            encode(&second, &ring),
            encode(&first, &ring)
        ))];
        assert_eq!(
            find(&headers, "id", &ring),
            Found::Valid(second, Verified::Primary)
        );
    }

    #[test]
    fn tampered_and_oversized_values_are_invalid() {
        let ring = ring(1);
        let value = encode(&Id::from_bytes([3; ID_LEN]), &ring);
        let mut flipped = value.clone().into_bytes();
        flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        let long = "A".repeat(10_000);
        for text in [flipped.as_str(), &value[..VALUE_LEN - 1], &long, "", "!!!!"] {
            assert_eq!(
                find(&[header(&format!("id={text}"))], "id", &ring),
                Found::Invalid
            );
        }
        assert_eq!(find(&[header("other=1")], "id", &ring), Found::Absent);
        assert_eq!(find(&[], "id", &ring), Found::Absent);
    }

    #[test]
    fn lines_split_at_every_separator_like_split_does() {
        for line in [
            &b""[..],
            b";",
            b";;a",
            b"a=1",
            b"a=1;",
            b" a=1 ; b=2;c",
            b"x\xff;\x80=;id=v",
        ] {
            let expected: Vec<&[u8]> = line.split(|&byte| byte == b';').collect();
            assert_eq!(pairs(line).collect::<Vec<_>>(), expected, "{line:?}");
        }
    }

    #[test]
    fn candidates_are_bounded() {
        let ring = ring(1);
        let good = encode(&Id::from_bytes([3; ID_LEN]), &ring);
        let forged = encode(&Id::from_bytes([3; ID_LEN]), &self::ring(2));
        let mut text = vec![format!("id={forged}"); MAX_CANDIDATES];
        text.push(format!("id={good}"));
        assert_eq!(
            find(&[header(&text.join("; "))], "id", &ring),
            Found::Invalid
        );
    }
}
