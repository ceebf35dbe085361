//! Access control of the HTTP API: who is calling ([`Principal`]) and what
//! they may do ([`Role`]).
//!
//! **Credentials.** A principal comes from a token: the admin token in
//! `SKALD_ADMIN_TOKEN`, or a named token of `http.tokens` (its secret in the
//! environment variable the entry names; see [`crate::config::HttpConfig`]).
//! A client sends it as `Authorization: Bearer <token>`. A browser logs in
//! instead: `POST /api/v1/login` with `{"token": "…"}` sets the session
//! cookie [`SESSION_COOKIE`] (`HttpOnly; SameSite=Strict; Path=/`, a random
//! 256-bit id, valid [`SESSION_TTL`]), which then counts like the token,
//! also on the WebSocket upgrade of `/api/v1/events`; `POST /api/v1/logout`
//! ends the session. Tokens and session ids are kept only as SHA-256
//! digests and compared in constant time.
//!
//! **Authentication** ([`require_principal`], a middleware on every
//! protected route): no credential, an unknown token or an unknown/expired
//! session answers 401 `unauthorized` with `WWW-Authenticate: Bearer
//! realm="skald"`. After [`MAX_FAILURES`] wrong tokens (bearer or login)
//! from one IP address within [`FAILURE_WINDOW`], that address gets 429
//! `too_many_requests` for [`BLOCK_FOR`] ([`FailureLimiter`]). A stale
//! session cookie is not counted (a browser keeps sending it).
//!
//! **Authorization** is the handler's: [`Principal::require`] answers 403
//! `forbidden` when the role is too low, [`Principal::may_act_on`] tells
//! whether a supervisor may act on a call of a given queue.
//!
//! Open without a principal: `/health/live`, `/health/ready`, the login,
//! and Twilio's webhook, status callback and Media Streams socket (each
//! checks Twilio's signature). `/api/v1/context/{ref}` also accepts the
//! context's own token instead of a principal.

use super::error::ApiError;
use super::HttpState;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub use crate::config::Role;

/// Name of the session cookie set by `POST /api/v1/login`.
pub const SESSION_COOKIE: &str = "skald_session";
/// How long a login session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Wrong tokens from one address tolerated within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 10;
/// Window over which wrong tokens are counted.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long an address that sent too many wrong tokens gets 429.
pub const BLOCK_FOR: Duration = Duration::from_secs(60);
/// Most live sessions kept; the oldest is dropped beyond it.
const MAX_SESSIONS: usize = 10_000;
/// Most addresses tracked by the limiter before expired ones are pruned.
const MAX_TRACKED: usize = 10_000;

/// Who is calling the API: a token's holder and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name (`admin` for `SKALD_ADMIN_TOKEN`); audit events name it.
    pub name: String,
    /// What the holder may do.
    pub role: Role,
    /// Queues a supervisor may act on; empty: all.
    pub queues: Vec<String>,
}

impl Principal {
    /// `Ok` when this principal's role is `role` or higher; else 403
    /// `forbidden` naming the role needed.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("this needs the {role} role; `{}` is a {}", self.name, self.role)))
        }
    }

    /// True when this principal may act on a call of `queue`: admins always;
    /// others when their queue list is empty or names it. A call with no
    /// queue (`None`) is open to every supervisor.
    pub fn may_act_on(&self, queue: Option<&str>) -> bool {
        match queue {
            _ if self.role == Role::Admin || self.queues.is_empty() => true,
            None => true,
            Some(q) => self.queues.iter().any(|a| a == q),
        }
    }
}

/// The principal a protected route's middleware found; 401 when the route
/// is not behind [`require_principal`] and none was found.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| ApiError::Unauthorized(MISSING.into()))
    }
}

/// Message of a 401 without any credential.
const MISSING: &str = "log in or send `Authorization: Bearer <token>`";

/// The API's tokens, login sessions and failure limiter. Cheap to clone
/// (shared state).
#[derive(Clone, Default)]
pub struct Auth {
    /// Shared state.
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("tokens", &self.inner.tokens.len()).finish_non_exhaustive()
    }
}

/// What [`Auth`] shares between clones.
#[derive(Default)]
struct Inner {
    /// Known tokens as digests, with the principal each stands for.
    tokens: Vec<([u8; 32], Principal)>,
    /// Login sessions by the digest of their id.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    /// Wrong-token counting per address.
    limiter: Mutex<FailureLimiter>,
    /// `http.trusted_proxies`: whose `X-Forwarded-For` names the client.
    trusted_proxies: Vec<ipnet::IpNet>,
}

/// One login session.
struct Session {
    /// Who logged in.
    principal: Principal,
    /// When the session ends.
    expires: Instant,
}

/// How a request presented itself.
enum Credential<'a> {
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// The session cookie's value.
    Session(&'a str),
}

impl Auth {
    /// The tokens of `http`: its `admin_token` (from `SKALD_ADMIN_TOKEN`,
    /// named `admin`) and each resolved entry of `tokens`. With none,
    /// every protected route answers 401.
    pub fn from_config(http: &crate::config::HttpConfig) -> Auth {
        let mut tokens = Vec::new();
        if let Some(t) = &http.admin_token {
            tokens.push((digest(t), Principal { name: "admin".into(), role: Role::Admin, queues: Vec::new() }));
        }
        for t in &http.tokens {
            if let Some(secret) = &t.token {
                let principal = Principal { name: t.name.clone(), role: t.role, queues: t.queues.clone() };
                tokens.push((digest(secret), principal));
            }
        }
        if tokens.is_empty() {
            tracing::warn!(
                "no API tokens: set SKALD_ADMIN_TOKEN (or http.tokens) to use the API; every route but health answers 401"
            );
        }
        Auth { inner: Arc::new(Inner { tokens, trusted_proxies: http.trusted_proxies.clone(), ..Inner::default() }) }
    }

    /// Authenticates a request by its headers, from `ip` at `now`. Errors:
    /// 429 while `ip` is blocked, 401 without a valid credential (a wrong
    /// bearer token counts towards the block).
    pub fn authenticate(&self, headers: &HeaderMap, ip: IpAddr, now: Instant) -> Result<Principal, ApiError> {
        if let Err(retry) = self.limiter().check(ip, now) {
            return Err(ApiError::TooManyRequests { retry_after_s: retry.as_secs().max(1) });
        }
        match credential(headers) {
            None => Err(ApiError::Unauthorized(MISSING.into())),
            Some(Credential::Bearer(token)) => self.check_token(token, ip, now),
            Some(Credential::Session(id)) => {
                let principal = self.session(id, now).ok_or_else(|| {
                    ApiError::Unauthorized("the session has ended or is unknown; log in again".into())
                })?;
                check_origin(headers)?;
                Ok(principal)
            }
        }
    }

    /// The principal of `token`, or 401 (counted as a failure of `ip`).
    fn check_token(&self, token: &str, ip: IpAddr, now: Instant) -> Result<Principal, ApiError> {
        let given = digest(token);
        // Every entry is compared, so the time taken does not tell which matched.
        let mut found = None;
        for (d, p) in &self.inner.tokens {
            if constant_time_eq(d, &given) {
                found = Some(p);
            }
        }
        match found {
            Some(p) => Ok(p.clone()),
            None => {
                self.record_failure(ip, now);
                Err(ApiError::Unauthorized("invalid token".into()))
            }
        }
    }

    /// Counts a wrong credential (a token, a context token) from `ip`.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        if self.limiter().record_failure(ip, now) {
            tracing::warn!(ip = %crate::observability::Pii(ip.to_string()), "too many wrong API tokens; address blocked");
        }
    }

    /// `Err(retry after)` while `ip` is blocked.
    pub fn check_blocked(&self, ip: IpAddr, now: Instant) -> Result<(), ApiError> {
        self.limiter().check(ip, now).map_err(|d| ApiError::TooManyRequests { retry_after_s: d.as_secs().max(1) })
    }

    /// Starts a session for `token` at `now`; returns its id (the cookie
    /// value). Errors as [`Auth::authenticate`] for a bearer token.
    pub fn login(&self, token: &str, ip: IpAddr, now: Instant) -> Result<String, ApiError> {
        self.check_blocked(ip, now)?;
        let principal = self.check_token(token, ip, now)?;
        let id = hex::encode(rand::random::<[u8; 32]>());
        let mut sessions = self.sessions();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        tracing::info!(name = %principal.name, role = %principal.role, "API login");
        sessions.insert(digest(&id), Session { principal, expires: now + SESSION_TTL });
        Ok(id)
    }

    /// Ends the session of the request's cookie, if any.
    pub fn logout(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            self.sessions().remove(&digest(id));
        }
    }

    /// The principal of a live session.
    fn session(&self, id: &str, now: Instant) -> Option<Principal> {
        let key = digest(id);
        let mut sessions = self.sessions();
        match sessions.get(&key) {
            Some(s) if s.expires > now => Some(s.principal.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.inner.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn limiter(&self) -> MutexGuard<'_, FailureLimiter> {
        self.inner.limiter.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts wrong tokens per IP address: after [`MAX_FAILURES`] within
/// [`FAILURE_WINDOW`], the address is blocked for [`BLOCK_FOR`]. Sans-IO:
/// time is an argument.
#[derive(Debug, Default)]
pub struct FailureLimiter {
    /// Per address: recent failure times and the end of its block.
    entries: HashMap<IpAddr, Failures>,
}

/// One address's record.
#[derive(Debug, Default)]
struct Failures {
    /// Times of the failures within the window, oldest first.
    times: VecDeque<Instant>,
    /// End of the current block.
    blocked_until: Option<Instant>,
}

impl FailureLimiter {
    /// `Ok` when `ip` may try at `now`; `Err(time left)` while blocked.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.entries.get(&ip).and_then(|f| f.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failure of `ip` at `now`; true when it starts a block.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.entries.len() >= MAX_TRACKED && !self.entries.contains_key(&ip) {
            self.prune(now);
        }
        let f = self.entries.entry(ip).or_default();
        while f.times.front().is_some_and(|t| now.saturating_duration_since(*t) >= FAILURE_WINDOW) {
            f.times.pop_front();
        }
        f.times.push_back(now);
        if f.times.len() >= MAX_FAILURES && f.blocked_until.is_none_or(|u| u <= now) {
            f.blocked_until = Some(now + BLOCK_FOR);
            f.times.clear();
            return true;
        }
        false
    }

    /// Forgets addresses with no failure in the window and no block.
    fn prune(&mut self, now: Instant) {
        self.entries.retain(|_, f| {
            f.blocked_until.is_some_and(|u| u > now)
                || f.times.back().is_some_and(|t| now.saturating_duration_since(*t) < FAILURE_WINDOW)
        });
    }
}

/// Middleware of every protected route: puts the request's [`Principal`]
/// in its extensions, or answers 401/429 (see the module doc).
pub async fn require_principal(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let ip = auth.client_ip(req.extensions(), req.headers());
    match auth.authenticate(req.headers(), ip, Instant::now()) {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

impl Auth {
    /// The address a request is counted against: the peer's (axum's
    /// connect info; unspecified in socket-free tests), or, when the peer
    /// is a trusted proxy, the client its `X-Forwarded-For` names
    /// ([`forwarded_client`]).
    pub(crate) fn client_ip(&self, ext: &axum::http::Extensions, headers: &HeaderMap) -> IpAddr {
        let peer = ext.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(a)| a.ip());
        forwarded_client(peer, headers, &self.inner.trusted_proxies)
    }
}

/// The client behind trusted proxies: `X-Forwarded-For` (all of its
/// headers, in order; each proxy appends the address it received from) is
/// read from the right while its addresses are trusted proxies; the first
/// one that is not is the client. A peer that is not a trusted proxy is the
/// client itself, whatever the header says (anyone could write it); an
/// entry that does not parse ends the walk at the last trusted hop, and a
/// chain of only trusted hops yields its leftmost.
pub(crate) fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => client = ip,
            Ok(ip) => return ip,
            Err(_) => break,
        }
    }
    client
}

/// Body of `POST /api/v1/login`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// An API token (`SKALD_ADMIN_TOKEN` or one of `http.tokens`).
    pub token: String,
}

/// `POST /api/v1/login`: starts a browser session for a token.
#[utoipa::path(
    post,
    path = "/api/v1/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 204, description = "Logged in; `Set-Cookie: skald_session=…; HttpOnly; SameSite=Strict; Path=/`"),
        (status = 400, description = "Malformed body", body = super::error::ErrorBody),
        (status = 401, description = "Unknown token", body = super::error::ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address", body = super::error::ErrorBody),
    ),
    security(()),
    extensions(("x-skald-role" = json!("public"))),
)]
pub async fn login(
    State(st): State<HttpState>,
    req_headers: HeaderMap,
    ext: axum::http::Extensions,
    body: Result<Json<LoginRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let ip = st.auth.client_ip(&ext, &req_headers);
    let now = Instant::now();
    st.auth.check_blocked(ip, now)?;
    let Json(req) = body.map_err(|e| ApiError::BadRequest(format!("body: {}", e.body_text())))?;
    let id = st.auth.login(&req.token, ip, now)?;
    let secure = if forwarded_https(&req_headers) { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    Ok(set_cookie(cookie))
}

/// `POST /api/v1/logout`: ends the browser session (and clears its cookie).
#[utoipa::path(
    post,
    path = "/api/v1/logout",
    tag = "auth",
    responses(
        (status = 204, description = "Logged out; the cookie is cleared"),
        (status = 401, description = "No valid token or session", body = super::error::ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("viewer"))),
)]
pub async fn logout(State(st): State<HttpState>, _who: Principal, headers: HeaderMap) -> Response {
    st.auth.logout(&headers);
    set_cookie(format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"))
}

/// 204 with a `Set-Cookie`.
fn set_cookie(cookie: String) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// True when a TLS-terminating proxy says the client used https.
fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// The request's credential: a bearer token wins over the session cookie.
fn credential(headers: &HeaderMap) -> Option<Credential<'_>> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    match bearer {
        Some(t) => Some(Credential::Bearer(t)),
        None => cookie(headers, SESSION_COOKIE).map(Credential::Session),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A cookie-authenticated request from a page of another origin is refused
/// (403), on top of `SameSite=Strict`: the `Origin` header, when present,
/// must name the host the request was sent to.
fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h).trim_end_matches('/');
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(ApiError::Forbidden("a session cookie is only accepted from skald's own pages".into()))
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HttpConfig, TokenConfig};

    #[test]
    fn the_forwarded_client_is_the_nearest_untrusted_hop() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "2001:db8::1/128".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let proxy = ip("10.0.0.2");
        // Client, then proxies appended in order (across headers too).
        assert_eq!(forwarded_client(proxy, &with(&["198.51.100.1, 10.0.0.3"]), &trusted), ip("198.51.100.1"));
        assert_eq!(forwarded_client(proxy, &with(&["198.51.100.1", "10.0.0.3"]), &trusted), ip("198.51.100.1"));
        // A spoofed leftmost entry does not win over the real client.
        assert_eq!(forwarded_client(proxy, &with(&["6.6.6.6, 198.51.100.1"]), &trusted), ip("198.51.100.1"));
        assert_eq!(forwarded_client(ip("2001:db8::1"), &with(&["2001:db8::9"]), &trusted), ip("2001:db8::9"));
        // Untrusted peer: the header is ignored.
        assert_eq!(forwarded_client(ip("203.0.113.5"), &with(&["198.51.100.1"]), &trusted), ip("203.0.113.5"));
        // No header, garbage, or only proxies: the last trusted hop.
        assert_eq!(forwarded_client(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(forwarded_client(proxy, &with(&["unknown, 10.0.0.3"]), &trusted), ip("10.0.0.3"));
        assert_eq!(forwarded_client(proxy, &with(&["10.0.0.4, 10.0.0.3"]), &trusted), ip("10.0.0.4"));
        // Nothing trusted (the default): always the peer.
        assert_eq!(forwarded_client(proxy, &with(&["198.51.100.1"]), &[]), proxy);
    }

    fn auth() -> Auth {
        let mut http = HttpConfig { admin_token: Some("admin-secret".into()), ..HttpConfig::default() };
        http.tokens.push(TokenConfig {
            name: "ana".into(),
            role: Role::Supervisor,
            token_env: "X".into(),
            queues: vec!["billing".into()],
            token: Some("ana-secret".into()),
        });
        Auth::from_config(&http)
    }

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {t}")).unwrap());
        h
    }

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn roles_are_ordered_and_required() {
        assert!(Role::Viewer < Role::Supervisor && Role::Supervisor < Role::Admin);
        let viewer = Principal { name: "v".into(), role: Role::Viewer, queues: vec![] };
        assert!(viewer.require(Role::Viewer).is_ok());
        let e = viewer.require(Role::Supervisor).unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert!(e.to_string().contains("supervisor"), "{e}");
    }

    #[test]
    fn supervisors_act_only_on_their_queues() {
        let sup = Principal { name: "s".into(), role: Role::Supervisor, queues: vec!["billing".into()] };
        assert!(sup.may_act_on(Some("billing")));
        assert!(!sup.may_act_on(Some("sales")));
        assert!(sup.may_act_on(None), "a call without a queue is open");
        let all = Principal { queues: vec![], ..sup.clone() };
        assert!(all.may_act_on(Some("sales")));
        let admin = Principal { role: Role::Admin, ..sup };
        assert!(admin.may_act_on(Some("sales")));
    }

    #[test]
    fn bearer_tokens_map_to_their_principals() {
        let a = auth();
        let now = Instant::now();
        assert_eq!(a.authenticate(&bearer("admin-secret"), IP, now).unwrap().role, Role::Admin);
        let ana = a.authenticate(&bearer("ana-secret"), IP, now).unwrap();
        assert_eq!((ana.name.as_str(), ana.role, ana.queues.as_slice()), ("ana", Role::Supervisor, &["billing".to_string()][..]));
        let e = a.authenticate(&bearer("nope"), IP, now).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        let e = a.authenticate(&HeaderMap::new(), IP, now).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        let mut basic = HeaderMap::new();
        basic.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic YWRtaW4tc2VjcmV0"));
        assert_eq!(a.authenticate(&basic, IP, now).unwrap_err().status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn sessions_work_like_tokens_until_logout_or_expiry() {
        let a = auth();
        let t0 = Instant::now();
        assert_eq!(a.login("wrong", IP, t0).unwrap_err().status(), StatusCode::UNAUTHORIZED);
        let id = a.login("ana-secret", IP, t0).unwrap();
        assert_eq!(id.len(), 64);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("theme=dark; {SESSION_COOKIE}={id}")).unwrap());
        assert_eq!(a.authenticate(&h, IP, t0).unwrap().name, "ana");
        // Same origin passes, another origin is refused.
        h.insert(header::HOST, HeaderValue::from_static("skald.example:8080"));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://skald.example:8080"));
        assert!(a.authenticate(&h, IP, t0).is_ok());
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert_eq!(a.authenticate(&h, IP, t0).unwrap_err().status(), StatusCode::FORBIDDEN);
        h.remove(header::ORIGIN);
        // Expired after the TTL; a stale cookie is not a failure.
        assert!(a.authenticate(&h, IP, t0 + SESSION_TTL).is_err());
        let id = a.login("ana-secret", IP, t0).unwrap();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("{SESSION_COOKIE}={id}")).unwrap());
        a.logout(&h);
        assert_eq!(a.authenticate(&h, IP, t0).unwrap_err().status(), StatusCode::UNAUTHORIZED);
        assert!(a.limiter().check(IP, t0).is_ok());
    }

    #[test]
    fn ten_failures_in_a_minute_block_for_a_minute() {
        let mut l = FailureLimiter::default();
        let t0 = Instant::now();
        let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8));
        // Spread over more than a window: old failures fall out.
        for i in 0..9 {
            assert!(!l.record_failure(IP, t0 + Duration::from_secs(10 * i)));
        }
        assert!(l.check(IP, t0 + Duration::from_secs(85)).is_ok());
        let t1 = t0 + Duration::from_secs(200);
        for i in 0..9 {
            assert!(!l.record_failure(IP, t1 + Duration::from_secs(i)));
        }
        assert!(l.check(IP, t1 + Duration::from_secs(9)).is_ok());
        assert!(l.record_failure(IP, t1 + Duration::from_secs(10)), "the tenth blocks");
        assert_eq!(l.check(IP, t1 + Duration::from_secs(11)), Err(Duration::from_secs(59)));
        assert!(l.check(other, t1 + Duration::from_secs(11)).is_ok(), "other addresses are not affected");
        assert!(l.check(IP, t1 + Duration::from_secs(70)).is_ok(), "the block ends after a minute");
    }

    #[test]
    fn blocked_address_gets_429_even_with_a_good_token() {
        let a = auth();
        let now = Instant::now();
        for _ in 0..MAX_FAILURES {
            let _ = a.authenticate(&bearer("guess"), IP, now);
        }
        let e = a.authenticate(&bearer("admin-secret"), IP, now).unwrap_err();
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(a.login("admin-secret", IP, now).unwrap_err().status(), StatusCode::TOO_MANY_REQUESTS);
        let later = now + BLOCK_FOR;
        assert!(a.authenticate(&bearer("admin-secret"), IP, later).is_ok());
    }
}
