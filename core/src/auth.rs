//! Authorization of private and presence joins (R15).
//!
//! The Hub asks its [`Authorizer`] with an [`AuthRequest`] and gets an
//! [`AuthResult`]. The authorizer is user code: the Hub calls it holding no
//! lock of its own, so a slow authorizer (a database lookup, a token check)
//! delays only the subscribe that asked.

use bytes::Bytes;

use crate::channel::ChannelType;
use crate::presence::Member;

/// What the authorizer is asked.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// The channel the client wants to join.
    pub channel: String,
    /// Its type (never `Public`: public joins are not authorized).
    pub channel_type: ChannelType,
    /// The Hub-assigned client id (`client-N`).
    pub client_id: String,
    /// The opaque credentials given to `Hub::add` / `Hub::attach`.
    pub auth: Bytes,
    /// Per-subscribe credentials given to `Hub::subscribe_with` (empty for
    /// `Hub::subscribe`): Pusher-style protocols sign every join.
    pub params: Bytes,
}

/// The authorizer's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthResult {
    /// Whether the join is allowed.
    pub allowed: bool,
    /// The identity published to a presence roster. An empty `id` falls back
    /// to the client id.
    pub member: Member,
}

impl AuthResult {
    /// Allows the join with this presence identity.
    pub fn allow(member: Member) -> Self {
        Self {
            allowed: true,
            member,
        }
    }

    /// Allows the join; a presence roster shows the client id.
    pub fn allow_anonymous() -> Self {
        Self {
            allowed: true,
            member: Member::default(),
        }
    }

    /// Denies the join.
    pub fn deny() -> Self {
        Self::default()
    }
}

/// Decides who may join a private or presence channel.
///
/// Closures implement it:
///
/// ```
/// use realtime::{AuthRequest, AuthResult, Hub, Member};
///
/// let hub = Hub::builder()
///     .authorizer(|r: &AuthRequest| {
///         if r.auth.as_ref() == b"secret-token" {
///             AuthResult::allow(Member::new("u42", r#"{"name":"Ada"}"#))
///         } else {
///             AuthResult::deny()
///         }
///     })
///     .build();
/// # drop(hub);
/// ```
pub trait Authorizer: Send + Sync + 'static {
    /// Answers one join request. Called outside every Hub lock.
    fn authorize(&self, request: &AuthRequest) -> AuthResult;
}

impl<F> Authorizer for F
where
    F: Fn(&AuthRequest) -> AuthResult + Send + Sync + 'static,
{
    fn authorize(&self, request: &AuthRequest) -> AuthResult {
        self(request)
    }
}
