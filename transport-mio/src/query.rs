//! Query strings (`application/x-www-form-urlencoded`): the one
//! percent-decoder and the one query parser of the transport and of the
//! servers built on it.
//!
//! Decoding is lenient, because a request is answered, not refused, for a
//! sloppy escape: `%XX` (either case) becomes its byte, `+` becomes a space,
//! a `%` not followed by two hex digits stays a literal `%` (the bytes after
//! it are decoded on their own: `%+1` is `% 1`), and the decoded bytes are
//! read as UTF-8 with invalid sequences replaced by U+FFFD. Pairs are split
//! on `&`, empty pairs are skipped, and a pair without `=` has an empty
//! value.
//!
//! [`parse_query`] is the strict form for APIs that sign their query
//! (Pusher's HTTP API): a key that appears twice, compared
//! ASCII-case-insensitively after decoding, makes the whole query invalid,
//! so no two readers of the same query can pick different values.
//! [`crate::Request::query_params`] is the lenient form, for reading one
//! parameter of an upgrade request.

use std::collections::HashSet;

/// A query string that [`parse_query`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A key appears more than once (compared ASCII-case-insensitively).
    #[error("repeated query parameter {0:?}")]
    RepeatedKey(String),
}

/// Splits a query string into decoded `(key, value)` pairs, in order, and
/// refuses one whose keys repeat.
///
/// # Errors
///
/// [`QueryError::RepeatedKey`], with the second occurrence of the key as
/// decoded, when two keys are equal ignoring ASCII case.
///
/// # Examples
///
/// ```
/// use realtime_mio::{parse_query, QueryError};
///
/// let pairs = parse_query("auth_key=k&body_md5=&name=a%2Fb+c&flag").unwrap();
/// assert_eq!(pairs[2], ("name".to_owned(), "a/b c".to_owned()));
/// assert_eq!(pairs[3], ("flag".to_owned(), String::new()));
/// assert_eq!(parse_query("a=1&A=2"), Err(QueryError::RepeatedKey("A".to_owned())));
/// ```
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (key, value) in pairs(query) {
        if !seen.insert(key.to_ascii_lowercase()) {
            return Err(QueryError::RepeatedKey(key));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// The decoded pairs of `query`, repeats included (see the module docs).
pub(crate) fn pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

/// Decodes `%XX` escapes and `+` (a space); malformed escapes are kept as
/// they are and invalid UTF-8 is replaced (see the module docs).
///
/// # Examples
///
/// ```
/// assert_eq!(realtime_mio::percent_decode("a%2Fb+c%zz"), "a/b c%zz");
/// ```
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex);
                let lo = bytes.get(i + 2).copied().and_then(hex);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_plus_decode_to_bytes_and_spaces() {
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(percent_decode("%e2%98%83%E2%98%83"), "☃☃");
        assert_eq!(percent_decode("+"), " ");
        assert_eq!(percent_decode("%2B"), "+");
    }

    #[test]
    fn malformed_escapes_stay_literal() {
        // Not a sign: `%+1` is a literal `%`, then `+` (a space), then `1`.
        assert_eq!(percent_decode("%+1"), "% 1");
        assert_eq!(percent_decode("%-1"), "%-1");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4%41"), "%4A");
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(percent_decode("a%e2%98b"), "a\u{fffd}b");
    }

    #[test]
    fn queries_split_on_ampersands_and_skip_empty_pairs() {
        let q = parse_query("a=1&b=x%20y&c&&d=e=f").unwrap();
        let want = [("a", "1"), ("b", "x y"), ("c", ""), ("d", "e=f")];
        let want: Vec<_> = want
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(q, want);
        assert_eq!(parse_query(""), Ok(Vec::new()));
    }

    #[test]
    fn repeated_keys_are_refused_ignoring_case_after_decoding() {
        let repeated = |k: &str| Err(QueryError::RepeatedKey(k.to_owned()));
        assert_eq!(parse_query("a=1&A=2"), repeated("A"));
        assert_eq!(parse_query("a=1&a=1"), repeated("a"));
        assert_eq!(parse_query("ab=1&a%42=2"), repeated("aB"));
        // The lenient form keeps both.
        assert_eq!(pairs("a=1&A=2").count(), 2);
    }
}
