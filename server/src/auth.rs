//! Signatures: HMAC-SHA256 over Pusher's strings-to-sign, compared in
//! constant time.
//!
//! Three things are signed with an app's secret (PUSHER.md, "Auth
//! signatures" and "HTTP API"):
//! - a private or presence subscription: `socket_id:channel[:channel_data]`,
//!   sent by the client as `auth = "KEY:HEXSIG"`;
//! - a user sign-in: `socket_id::user::user_data`, same `auth` shape;
//! - every HTTP API request: `METHOD\nPATH\nQUERY` ([`api_string_to_sign`]).
//!
//! Verification decodes the hex signature and lets `hmac` compare the tags
//! (`Mac::verify_slice`, constant time), so a timing side channel cannot
//! reveal a valid signature byte by byte.

use hmac::{Hmac, Mac};
use md5::{Digest as _, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The `auth` value is not `KEY:HEXSIG`.
    Malformed,
    /// The key part names another app.
    WrongKey,
    /// The signature does not match.
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "auth must be KEY:SIGNATURE",
            Self::WrongKey => "auth key does not match the app",
            Self::Mismatch => "invalid signature",
        })
    }
}

impl std::error::Error for SignatureError {}

fn mac(secret: &str) -> HmacSha256 {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

/// Hex HMAC-SHA256 of `message` under `secret`.
///
/// # Examples
///
/// ```
/// // The worked example of PUSHER.md.
/// let sig = realtime_server::auth::sign("7ad3773142a6692b25b8", "1234.1234:private-foobar");
/// assert_eq!(sig, "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4");
/// ```
pub fn sign(secret: &str, message: &str) -> String {
    let mut m = mac(secret);
    m.update(message.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Whether `signature_hex` is the HMAC of `message` under `secret`,
/// compared in constant time. Hex case does not matter.
pub fn verify(secret: &str, message: &str, signature_hex: &str) -> bool {
    let Ok(tag) = hex::decode(signature_hex) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(message.as_bytes());
    m.verify_slice(&tag).is_ok()
}

/// Checks a client `auth` value (`KEY:HEXSIG`) for `message`.
///
/// # Errors
///
/// [`SignatureError`] naming what is wrong.
pub fn verify_token(
    key: &str,
    secret: &str,
    auth: &str,
    message: &str,
) -> Result<(), SignatureError> {
    let (k, sig) = auth.split_once(':').ok_or(SignatureError::Malformed)?;
    // The key is public; comparing it in constant time gains nothing.
    if k != key {
        return Err(SignatureError::WrongKey);
    }
    if verify(secret, message, sig) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The string signed for a channel subscription: `socket_id:channel` for
/// private channels, `socket_id:channel:channel_data` for presence.
pub fn channel_string(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The string signed for a user sign-in: `socket_id::user::user_data`.
pub fn user_string(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// The string signed for an HTTP API request: `METHOD\nPATH\nQUERY`, where
/// QUERY is every parameter but `auth_signature`, keys lower-cased, sorted
/// by key, joined `k=v&...` with the decoded values and no escaping.
pub fn api_string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    pairs.sort();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path,
        query.join("&")
    )
}

/// Hex MD5 of an HTTP API request body (`body_md5`).
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example_of_pusher_md_signs_and_verifies() {
        let msg = channel_string("1234.1234", "private-foobar", None);
        let sig = "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        assert_eq!(sign("7ad3773142a6692b25b8", &msg), sig);
        assert!(verify("7ad3773142a6692b25b8", &msg, sig));
        assert!(verify("7ad3773142a6692b25b8", &msg, &sig.to_uppercase()));
        let auth = format!("278d425bdf160c739803:{sig}");
        assert_eq!(
            verify_token("278d425bdf160c739803", "7ad3773142a6692b25b8", &auth, &msg),
            Ok(())
        );
    }

    #[test]
    fn tokens_with_wrong_key_wrong_secret_or_garbage_are_refused() {
        let msg = "1.2:private-x";
        let good = format!("k:{}", sign("s", msg));
        assert_eq!(verify_token("k", "s", &good, msg), Ok(()));
        assert_eq!(
            verify_token("other", "s", &good, msg),
            Err(SignatureError::WrongKey)
        );
        assert_eq!(
            verify_token("k", "t", &good, msg),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_token("k", "s", "nocolon", msg),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_token("k", "s", "k:zz", msg),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_token("k", "s", "k:", msg),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn api_string_sorts_lowercases_and_drops_the_signature() {
        let params = vec![
            ("auth_timestamp".to_owned(), "2".to_owned()),
            ("Auth_Key".to_owned(), "k".to_owned()),
            ("auth_signature".to_owned(), "x".to_owned()),
            ("filter_by_prefix".to_owned(), "presence-".to_owned()),
        ];
        assert_eq!(
            api_string_to_sign("get", "/apps/1/channels", &params),
            "GET\n/apps/1/channels\nauth_key=k&auth_timestamp=2&filter_by_prefix=presence-"
        );
    }

    #[test]
    fn body_md5_is_hex_md5() {
        assert_eq!(body_md5(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
