//! What the server's own Redis users (cluster presence, webhooks, the cache
//! channels' shared store) need beside the `broadcasting` driver: one way
//! to open a blocking connection whose every command is bounded in time,
//! and glob escaping for `SCAN MATCH` patterns.

use std::time::Duration;

/// A connection to `client` opened within `timeout`, whose reads and
/// writes also give up after `timeout`: a Redis that stops answering
/// costs its caller at most that per command, never a hang.
///
/// # Errors
///
/// Redis cannot be reached in time, or the socket refused the timeouts.
pub(crate) fn open(
    client: &redis::Client,
    timeout: Duration,
) -> redis::RedisResult<redis::Connection> {
    let c = client.get_connection_with_timeout(timeout)?;
    c.set_read_timeout(Some(timeout))?;
    c.set_write_timeout(Some(timeout))?;
    Ok(c)
}

/// `s` with Redis glob characters escaped, for a `MATCH` pattern.
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape(r"a*b?[c]\d"), r"a\*b\?\[c\]\\d");
        assert_eq!(glob_escape("plain:key"), "plain:key");
    }
}
