//! Errors that speak RFC 6749. The public `error_description` is separate from the internal
//! cause, which is logged and never sent.

use std::borrow::Cow;
use std::fmt;

/// Error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 8707 §2 and RFC 6750 §3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    AccessDenied,
    UnsupportedResponseType,
    ServerError,
    TemporarilyUnavailable,
    InvalidToken,
    InsufficientScope,
    LoginRequired,
    ConsentRequired,
    InteractionRequired,
    /// A rate limit was hit: HTTP 429 with `Retry-After`.
    TooManyRequests,
    /// RFC 9449 §5, §7.1: the DPoP proof is missing, invalid or replayed.
    InvalidDpopProof,
    /// RFC 9449 §8: the proof must carry the nonce in the `DPoP-Nonce` header.
    UseDpopNonce,
    /// RFC 8628 §3.5: the person has not decided yet.
    AuthorizationPending,
    /// RFC 8628 §3.5: polling too fast; the interval grows by 5 s.
    SlowDown,
    /// RFC 8628 §3.5: the device code expired.
    ExpiredToken,
    /// RFC 7591 §3.2.2: a redirect URI of a registration is not acceptable.
    InvalidRedirectUri,
    /// RFC 7591 §3.2.2: another field of a registration is not acceptable.
    InvalidClientMetadata,
    /// RFC 7591 §3.2.2: software statements are not accepted here.
    UnapprovedSoftwareStatement,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::InteractionRequired => "interaction_required",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::UnapprovedSoftwareStatement => "unapproved_software_statement",
        }
    }

    /// HTTP status on the token-style endpoints (RFC 6749 §5.2, RFC 6750 §3.1).
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => 401,
            ErrorCode::InsufficientScope => 403,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            ErrorCode::TooManyRequests => 429,
            _ => 400,
        }
    }
}

/// How the client tried to authenticate, so `invalid_client` can answer with the matching
/// `WWW-Authenticate` challenge (RFC 6749 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    None,
    Basic,
    /// RFC 6750 §3 with the error code.
    Bearer,
    /// RFC 6750 §3.1: the request had no token, so the challenge carries no error code.
    BearerRealmOnly,
    /// As `BearerRealmOnly`, at a resource that also takes DPoP-bound tokens: both schemes
    /// are offered, DPoP with its `algs` (RFC 9449 §7.1).
    BearerOrDpopRealmOnly,
    /// RFC 9449 §7.1: `WWW-Authenticate: DPoP` with the error code (a resource request).
    Dpop,
}

#[derive(Debug, Clone)]
pub struct OAuthError {
    pub code: ErrorCode,
    /// Sent to the client: says what was wrong with the request, never why inside.
    pub description: Cow<'static, str>,
    pub challenge: Challenge,
    /// Seconds, for `429 Too Many Requests` (RFC 6585 §4).
    pub retry_after: Option<u64>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description.into(),
            challenge: Challenge::None,
            retry_after: None,
        }
    }

    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_scope(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, description)
    }

    pub fn invalid_target(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidTarget, description)
    }

    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    /// RFC 9449 §5: at the token endpoint (400); at `/userinfo` it goes with a DPoP challenge.
    pub fn invalid_dpop_proof(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidDpopProof, description)
    }

    pub fn unauthorized_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, description)
    }

    /// Client authentication failed (RFC 6749 §5.2): one message whatever the reason, so the
    /// answer does not reveal whether the client exists.
    pub fn invalid_client(challenge: Challenge) -> Self {
        OAuthError {
            code: ErrorCode::InvalidClient,
            description: "client authentication failed".into(),
            challenge,
            retry_after: None,
        }
    }

    /// An internal failure: the cause is logged here, the client sees a generic message.
    pub fn server_error(cause: &dyn fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            ErrorCode::ServerError,
            "the server could not complete the request",
        )
    }

    /// A dependency (the database, Redis) did not answer in time: 503 with `Retry-After`.
    pub fn temporarily_unavailable(cause: &dyn fmt::Display) -> Self {
        tracing::warn!(error = %cause, "temporarily unavailable");
        let mut error = Self::new(
            ErrorCode::TemporarilyUnavailable,
            "the server is temporarily unable to handle the request",
        );
        error.retry_after = Some(1);
        error
    }
}

impl OAuthError {
    pub fn too_many_requests(retry_after: u64) -> Self {
        OAuthError {
            code: ErrorCode::TooManyRequests,
            description: "too many requests; retry later".into(),
            challenge: Challenge::None,
            retry_after: Some(retry_after),
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

impl std::error::Error for OAuthError {}
