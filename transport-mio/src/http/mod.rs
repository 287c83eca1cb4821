//! Plain HTTP/1.1 on the WebSocket port: the parsed [`Request`] that
//! handlers see, the [`HttpResponse`] they return, and the parsing and
//! serialisation at the edge.
//!
//! Parsing uses `httparse` on the bytes buffered by the connection (at most
//! [`MAX_HEAD`] bytes of request head). A request is turned into typed values
//! once, here: method, path, raw query, headers as strings (non-UTF-8 bytes
//! are replaced), the body length, whether it asks for an upgrade and whether
//! the connection stays open. Anything malformed becomes an [`HttpError`]
//! carrying the status to answer with; nothing here panics on input.
//!
//! Keep-alive: HTTP/1.1 requests keep the connection open unless they say
//! `Connection: close`; HTTP/1.0 ones only with `Connection: keep-alive`.
//! Error responses always close. Request bodies come with
//! `Content-Length` or `Transfer-Encoding: chunked` ([`Chunked`],
//! bounded by the same body limit); both at once is refused (400).
//!
//! `Content-Length` is strict (RFC 9110 §8.6): one or more ASCII digits and
//! nothing else. `+3`, `-1`, `0x10`, `3 3`, `3,3`, an empty value or a number
//! that does not fit a `usize` is 400, and so are two `Content-Length`
//! headers that disagree: a proxy in front that reads such a header
//! differently would otherwise see another request boundary than ours
//! (request smuggling). Identical repeats are one value.
//!
//! `HEAD` requests get the head of the response the handler returns (its
//! `Content-Length` included) and never a body byte (see
//! [`is_head_request`]).

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::query;

/// Largest request head (request line and headers) accepted.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// Most headers accepted in one request.
const MAX_HEADERS: usize = 64;

/// An HTTP request as a [`crate::Handler`] sees it: an upgrade request or a
/// plain request on the same port.
///
/// # Examples
///
/// ```
/// use realtime_mio::Request;
///
/// let req = Request {
///     method: "GET".into(),
///     path: "/app/key".into(),
///     query: "protocol=7&client=js%20lib".into(),
///     headers: vec![("Host".into(), "example.org".into())],
///     peer: "127.0.0.1:5000".parse().unwrap(),
/// };
/// assert_eq!(req.header("host"), Some("example.org"));
/// assert_eq!(req.query_param("client").as_deref(), Some("js lib"));
/// assert_eq!(req.query_param("missing"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (`GET`, `POST`, ...).
    pub method: String,
    /// The path, without the query (not percent-decoded).
    pub path: String,
    /// The raw query string after `?`, empty if none.
    pub query: String,
    /// Headers in arrival order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The peer's address.
    pub peer: SocketAddr,
}

impl Request {
    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter with this name, percent-decoded (`+` is a
    /// space, as in HTML forms).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_params().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Every query parameter, percent-decoded as [`crate::percent_decode`]
    /// does, in order; repeated keys are kept (see [`crate::parse_query`]
    /// for the strict form).
    pub fn query_params(&self) -> impl Iterator<Item = (String, String)> + '_ {
        query::pairs(&self.query)
    }

    /// Whether a header holds `token` in its comma-separated list
    /// (case-insensitive), as `Connection: keep-alive, Upgrade` does.
    pub(crate) fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// An HTTP response: status, headers and body. `Content-Length` and
/// `Connection` are added when it is written; don't set them.
///
/// # Examples
///
/// ```
/// use realtime_mio::HttpResponse;
///
/// let r = HttpResponse::json(200, r#"{"ok":true}"#).header("Cache-Control", "no-store");
/// assert_eq!(r.status, 200);
/// assert!(r.headers.iter().any(|(k, v)| k == "Content-Type" && v == "application/json"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers, written in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl HttpResponse {
    /// A response with no headers.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A response with `Content-Type: application/json`.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Self::new(status, body).header("Content-Type", "application/json")
    }

    /// A response with `Content-Type: text/plain; charset=utf-8`.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        Self::new(status, body).header("Content-Type", "text/plain; charset=utf-8")
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The status line, headers and blank line; the body goes out as its own
    /// buffer, uncopied.
    pub(crate) fn encode_head(&self, keep_alive: bool) -> Bytes {
        let mut head = BytesMut::with_capacity(128 + self.headers.len() * 48);
        head.put_slice(b"HTTP/1.1 ");
        head.put_slice(self.status.to_string().as_bytes());
        head.put_u8(b' ');
        head.put_slice(reason_phrase(self.status).as_bytes());
        head.put_slice(b"\r\n");
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("connection") {
                continue;
            }
            // Header injection: the application's strings must not end the
            // header block early.
            let clean = |s: &str| s.replace(['\r', '\n'], " ");
            head.put_slice(clean(k).as_bytes());
            head.put_slice(b": ");
            head.put_slice(clean(v).as_bytes());
            head.put_slice(b"\r\n");
        }
        head.put_slice(b"Content-Length: ");
        head.put_slice(self.body.len().to_string().as_bytes());
        head.put_slice(if keep_alive {
            b"\r\nConnection: keep-alive\r\n\r\n".as_slice()
        } else {
            b"\r\nConnection: close\r\n\r\n".as_slice()
        });
        head.freeze()
    }
}

/// The reason phrase of common status codes.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// A request that cannot be served, with the status to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HTTP {status}: {what}")]
pub(crate) struct HttpError {
    pub(crate) status: u16,
    pub(crate) what: &'static str,
}

impl HttpError {
    pub(crate) fn new(status: u16, what: &'static str) -> Self {
        Self { status, what }
    }

    pub(crate) fn response(&self) -> HttpResponse {
        let r = HttpResponse::text(self.status, format!("{}\n", self.what));
        if self.status == 426 {
            r.header("Sec-WebSocket-Version", "13")
        } else {
            r
        }
    }
}

/// A complete request head, parsed.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) request: Request,
    /// Bytes of the head in the buffer (the body starts there).
    pub(crate) len: usize,
    /// Body length from `Content-Length` (0 if absent or chunked).
    pub(crate) body_len: usize,
    /// The body comes in `Transfer-Encoding: chunked` (see [`Chunked`]).
    pub(crate) chunked: bool,
    /// Whether the connection stays open after the response.
    pub(crate) keep_alive: bool,
    /// `Upgrade: websocket` was asked for.
    pub(crate) upgrade: bool,
}

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete.
///
/// # Errors
///
/// 400 for malformed requests (including `Transfer-Encoding` together with
/// `Content-Length`, the request-smuggling shape), 431 for oversized heads,
/// 413 for bodies over `max_body`, 501 for transfer codings other than
/// `chunked`.
pub(crate) fn parse_head(
    buf: &[u8],
    peer: SocketAddr,
    max_body: usize,
) -> Result<Option<Head>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(HttpError::new(431, "request head too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::new(431, "too many headers"))
        }
        Err(_) => return Err(HttpError::new(400, "malformed request")),
    };
    if len > MAX_HEAD {
        return Err(HttpError::new(431, "request head too large"));
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HttpError::new(400, "malformed request"));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        peer,
    };
    let mut body_len: Option<usize> = None;
    let mut chunked = false;
    for (k, v) in &request.headers {
        if k.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(v)?;
            if body_len.is_some_and(|m| m != n) {
                return Err(HttpError::new(400, "conflicting Content-Length"));
            }
            body_len = Some(n);
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            if !v.trim().eq_ignore_ascii_case("chunked") || chunked {
                return Err(HttpError::new(501, "unsupported transfer coding"));
            }
            chunked = true;
        }
    }
    if chunked && body_len.is_some() {
        return Err(HttpError::new(
            400,
            "both Transfer-Encoding and Content-Length",
        ));
    }
    let body_len = body_len.unwrap_or(0);
    if body_len > max_body {
        return Err(HttpError::new(413, "request body too large"));
    }
    let keep_alive = if version >= 1 {
        !request.header_has_token("connection", "close")
    } else {
        request.header_has_token("connection", "keep-alive")
    };
    let upgrade = request.header_has_token("upgrade", "websocket");
    Ok(Some(Head {
        request,
        len,
        body_len,
        chunked,
        keep_alive,
        upgrade,
    }))
}

/// Parses a `Content-Length` value: 1*DIGIT, surrounded by optional
/// whitespace only (see the module docs).
fn parse_content_length(value: &str) -> Result<usize, HttpError> {
    let digits = value.trim_matches([' ', '\t']);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::new(
            400,
            "bad Content-Length: digits only (no sign, no list)",
        ));
    }
    // Only digits: the one failure left is a value too large for usize.
    digits
        .parse()
        .map_err(|_| HttpError::new(400, "bad Content-Length: out of range"))
}

/// Whether the request at the start of `buf` is a `HEAD` request (methods
/// are case-sensitive; only the first token is looked at, so this holds
/// for a request that does not parse).
pub(crate) fn is_head_request(buf: &[u8]) -> bool {
    buf.starts_with(b"HEAD ")
}

/// Decodes a `chunked` body from the start of `buf` (the bytes after the
/// head) in one go. `Ok(None)`: incomplete; `Ok(Some((body, used)))`: the
/// body and the bytes it took, trailers included (trailer fields are
/// ignored). The connection uses [`Chunked`] to resume across reads.
///
/// # Errors
///
/// As [`Chunked::advance`].
#[cfg(test)]
pub(crate) fn decode_chunked(
    buf: &[u8],
    max_body: usize,
) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let mut chunked = Chunked::default();
    Ok(chunked
        .advance(buf, max_body)?
        .map(|used| (chunked.body, used)))
}

/// An incremental `chunked` body decoder: it remembers how far it got, so
/// each read costs what it adds, and a body of 1-byte chunks that arrives
/// in a million reads is decoded in linear time (the decoder used to start
/// over on every read: quadratic).
#[derive(Debug, Default)]
pub(crate) struct Chunked {
    /// The body decoded so far.
    pub(crate) body: Vec<u8>,
    /// Bytes of the encoding consumed by complete chunks.
    at: usize,
}

impl Chunked {
    /// Decodes the complete chunks of `buf` (every byte after the head,
    /// including those seen by earlier calls) past where the last call
    /// stopped. `Ok(Some(used))` once the body is complete: `body` holds
    /// it and `used` bytes of `buf` were its encoding, trailers included.
    ///
    /// # Errors
    ///
    /// 400 for a malformed chunk, 413 once the body or the buffered encoding
    /// exceeds `max_body` (plus framing slack), so an endless body is cut off.
    pub(crate) fn advance(
        &mut self,
        buf: &[u8],
        max_body: usize,
    ) -> Result<Option<usize>, HttpError> {
        let too_large = || HttpError::new(413, "request body too large");
        loop {
            let at = self.at;
            let (size_len, size) = match httparse::parse_chunk_size(&buf[at..]) {
                Ok(httparse::Status::Complete(x)) => x,
                Ok(httparse::Status::Partial) => break,
                Err(_) => return Err(HttpError::new(400, "malformed chunk")),
            };
            let size = usize::try_from(size).map_err(|_| too_large())?;
            if self.body.len().saturating_add(size) > max_body {
                return Err(too_large());
            }
            let data_at = at + size_len;
            if size == 0 {
                // Trailer section: empty line, or fields up to an empty line.
                let rest = &buf[data_at..];
                if rest.starts_with(b"\r\n") {
                    return Ok(Some(data_at + 2));
                }
                return match rest.windows(4).position(|w| w == b"\r\n\r\n") {
                    Some(end) => Ok(Some(data_at + end + 4)),
                    None if rest.len() > MAX_HEAD => {
                        Err(HttpError::new(431, "chunk trailers too large"))
                    }
                    None => Ok(None),
                };
            }
            let Some(data) = buf.get(data_at..data_at + size) else {
                break;
            };
            match buf.get(data_at + size..data_at + size + 2) {
                Some(b"\r\n") => {}
                Some(_) => return Err(HttpError::new(400, "malformed chunk")),
                None => break,
            }
            self.body.extend_from_slice(data);
            self.at = data_at + size + 2;
        }
        // Incomplete: bound what may be buffered while waiting.
        if buf.len() > max_body.saturating_mul(2).saturating_add(MAX_HEAD) {
            return Err(too_large());
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
