//! A sans-IO SIP registrar (RFC 3261 §10.3) with digest authentication
//! (RFC 3261 §22.4, RFC 7616, RFC 8760), so that human agents' SIP phones
//! can register with skald and be reached where they registered from.
//!
//! The [`Registrar`] owns the location service: per address-of-record
//! (the user part of the To URI, e.g. `alice`) a list of [`Binding`]s, each
//! a Contact URI with an expiry, the Call-ID/CSeq of the REGISTER that made
//! it, and the packet source address and transport it came from (a phone
//! behind NAT is reached at that address, not at its Contact's host).
//!
//! # Processing of one REGISTER ([`Registrar::handle_register`])
//!
//! ```text
//!  REGISTER ──► source IP, AOR user or digest username blocked? ── yes ──► 403 (no challenge)
//!                 │ no
//!                 ▼
//!             To is a SIP URI with a user? ── no ──► 404
//!                 │ yes
//!                 ▼
//!             Authorization for our realm? ── no ──► 401 + challenges (MD5, SHA-256)
//!                 │ yes                  (bad syntax: 400; bad or foreign nonce: 401)
//!                 ▼
//!             user known and response right? ── no ──► 403, failure counted
//!                 │ yes
//!                 ▼
//!             nonce older than nonce_ttl? ── yes ──► 401 stale=true (fresh nonce)
//!                 │ no
//!                 ▼
//!             digest username == AOR user? ── no ──► 403
//!                 │ yes
//!                 ▼
//!             Contacts: `*` (only with Expires: 0, alone) or name-addrs ── bad ──► 400
//!             any expires in 1..min_expires ──► 423 + Min-Expires
//!             same Call-ID, CSeq not higher than a binding's ──► 500 (nothing changed)
//!                 │
//!                 ▼
//!             apply: expires 0 removes, others add/refresh (capped at max_expires)
//!             ──► 200 OK listing every current binding with `;expires=<remaining>`
//! ```
//! A REGISTER without Contact is a query: 200 with the current bindings.
//! An unknown user gets the same 401 challenge as a known one (which users
//! exist does not leak), then 403.
//!
//! # Nonces
//! A nonce is `hex(t) ‖ hex(HMAC-SHA256(key, realm ‖ t))[..32]`, where `t` is
//! the issue time in milliseconds since the registrar was created. Nonces
//! therefore need no table: the MAC proves skald issued it, `t` gives its
//! age. A nonce older than `nonce_ttl` with a correct response is answered
//! `401 … stale=true` (RFC 7616 §3.3), so the phone retries with the new
//! nonce without asking for the password. The key is random per process,
//! so nonces from before a restart get a plain new challenge. Nonce counts
//! are not tracked: a replayed REGISTER within the nonce's lifetime is
//! stopped by the Call-ID/CSeq rule (its CSeq is not higher than the
//! binding it made).
//!
//! # Failed authentications
//! A wrong response, an unknown user, or a wrong response on an expired
//! nonce count as one failure for the source IP and one for the digest
//! username. When a key reaches `max_failures` (5) within `failure_window`
//! (60 s), it is blocked for `block_for` (60 s): every REGISTER from that IP,
//! or for or as that user, gets `403 Forbidden` without a challenge, even
//! with the right password. One warning is logged when a block starts. The
//! block lifts exactly `block_for` after the failure that started it.
//! Blocking per user lets someone who knows a user name lock that phone out
//! for a minute at a time; the limit per IP alone would let a password be
//! guessed from many addresses. Both are kept, as the issue asks.
//!
//! # Run loop
//! Time is an argument: `handle_register(…, now)` and `handle_timeout(now)`
//! are the inputs; after each, drain [`Registrar::poll_event`] and call
//! `handle_timeout` at [`Registrar::poll_timeout`] at the latest. In skald
//! the [`super::SipEndpoint`] owns the registrar, answers REGISTER through
//! its non-INVITE server transaction and forwards these events as
//! [`super::Event::Registrar`].
//!
//! Not implemented: RFC 5626 (outbound, flow tokens), GRUU, `q` ordering,
//! Path, a `Date` header (the core has no wall clock), several domains (the
//! host part of the AOR is not checked: one realm, one set of users).

use super::auth::{self, Algorithm, Challenge, Credentials};
use super::endpoint::Transport;
use crate::sip::msg::{NameAddr, Request, Uri};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

type HmacSha256 = Hmac<Sha256>;

/// Most bindings one AOR may hold; a REGISTER adding more gets 403.
pub const MAX_BINDINGS_PER_AOR: usize = 16;

/// Most failure records (IPs and user names) kept at once; while the table
/// is full, failures of new keys are not counted (records are forgotten
/// `failure_window` after their last failure, or when their block ends).
const MAX_TRACKED: usize = 10_000;

/// Length of the nonce's MAC part in hex digits (128 bits).
const NONCE_MAC_HEX: usize = 32;

/// Settings of a [`Registrar`] (RFC 3261 §10.3). Build with
/// [`RegistrarConfig::new`] and change the public fields as needed.
#[derive(Clone)]
pub struct RegistrarConfig {
    /// Digest realm (RFC 3261 §22.1) sent in challenges and required in
    /// credentials.
    pub realm: String,
    /// `(user, password)` of each user allowed to register its AOR.
    pub users: Vec<(String, String)>,
    /// Expiry of a binding whose REGISTER names none (RFC 3261 §10.2.1.1:
    /// 3600 s).
    pub default_expires: Duration,
    /// Shortest expiry accepted; shorter (non-zero) ones get 423 with
    /// `Min-Expires` (RFC 3261 §10.3 step 7, §20.23). Default 60 s.
    pub min_expires: Duration,
    /// Longest expiry granted; longer requests are cut to it (§10.3 step 7).
    /// Default 7200 s.
    pub max_expires: Duration,
    /// Age after which a nonce is stale (401 `stale=true`). Default 300 s.
    pub nonce_ttl: Duration,
    /// Digest algorithms challenged with, one `WWW-Authenticate` each, in
    /// this order (RFC 8760 §2.4: clients take the first they support).
    /// Default MD5 then SHA-256: libre-based phones (baresip 1.0) give up
    /// at a first challenge they cannot answer, so SHA-256 first would lock
    /// them out. Credentials with an algorithm not listed get a new
    /// challenge.
    pub algorithms: Vec<Algorithm>,
    /// Failures that start a block. Default 5.
    pub max_failures: usize,
    /// Window the failures are counted in. Default 60 s.
    pub failure_window: Duration,
    /// How long a block lasts. Default 60 s.
    pub block_for: Duration,
}

impl std::fmt::Debug for RegistrarConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.users.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("RegistrarConfig")
            .field("realm", &self.realm)
            .field("users", &users)
            .field("default_expires", &self.default_expires)
            .field("min_expires", &self.min_expires)
            .field("max_expires", &self.max_expires)
            .field("nonce_ttl", &self.nonce_ttl)
            .field("algorithms", &self.algorithms)
            .field("max_failures", &self.max_failures)
            .field("failure_window", &self.failure_window)
            .field("block_for", &self.block_for)
            .finish()
    }
}

/// One registered contact of an AOR (RFC 3261 §10.3 step 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The address-of-record's user (`alice`).
    pub aor: String,
    /// The Contact URI as the phone wrote it, without header parameters
    /// (`sip:alice@192.0.2.7:5062;transport=udp`).
    pub contact: String,
    /// Source address of the REGISTER packet: where to reach the phone when
    /// it sits behind NAT (the Contact's host may be a private address).
    pub source: SocketAddr,
    /// Transport the REGISTER came over.
    pub transport: Transport,
    /// When the binding expires.
    pub expires_at: Instant,
    /// Call-ID of the REGISTER that made or last refreshed it.
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
}

/// Why a binding went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnregisterReason {
    /// Its expiry passed without a refresh.
    Expired,
    /// A REGISTER removed it (`expires=0`, or `Contact: *`).
    Removed,
}

/// What the registrar tells the application, from [`Registrar::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrarEvent {
    /// A binding was added or refreshed.
    Registered {
        /// AOR user.
        aor: String,
        /// Contact URI.
        contact: String,
        /// Packet source the binding was made from.
        source: SocketAddr,
        /// Expiry granted.
        expires: Duration,
    },
    /// A binding was removed.
    Unregistered {
        /// AOR user.
        aor: String,
        /// Contact URI.
        contact: String,
        /// Why.
        reason: UnregisterReason,
    },
}

/// The response the registrar chose for a REGISTER; the endpoint sends it
/// in the request's server transaction (which adds the To tag and Server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterReply {
    /// Status code (200, 400, 401, 403, 404, 423, 500).
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header fields to add (WWW-Authenticate, Contact, Min-Expires …).
    pub headers: Vec<(String, String)>,
}

/// Why a REGISTER was refused; [`RegisterReply`] is made from it (kept as
/// values so tests and logs can name the cause).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// No usable credentials for our realm yet (or an unknown/forged
    /// nonce): 401 with fresh challenges.
    #[error("authentication required")]
    Challenge,
    /// Correct credentials on an expired nonce: 401 with `stale=true`.
    #[error("nonce expired")]
    Stale,
    /// Wrong password or unknown user: 403, counted as a failure.
    #[error("wrong credentials for `{0}`")]
    BadCredentials(String),
    /// Source IP or user blocked after repeated failures: 403, no challenge.
    #[error("blocked after repeated authentication failures")]
    Blocked,
    /// The authenticated user may not register this AOR: 403.
    #[error("user `{user}` may not register `{aor}`")]
    NotAuthorized {
        /// Digest username.
        user: String,
        /// AOR user of the To header.
        aor: String,
    },
    /// To is not a SIP URI with a user part: 404 (§10.3 step 5).
    #[error("no address-of-record in To")]
    NoAor,
    /// A malformed Authorization or Contact, a bad `*`: 400.
    #[error("{0}")]
    BadRequest(String),
    /// An expiry shorter than the minimum: 423 with Min-Expires.
    #[error("interval too brief")]
    TooBrief,
    /// Same Call-ID and a CSeq not higher than a binding's (§10.3 step 7):
    /// 500, nothing changed.
    #[error("out-of-order CSeq for this Call-ID")]
    OutOfOrder,
    /// More than [`MAX_BINDINGS_PER_AOR`] bindings: 403.
    #[error("too many bindings")]
    TooManyBindings,
}

/// The registrar: location service, digest checks and failure limits.
pub struct Registrar {
    /// Settings (passwords dropped; see `secrets`).
    cfg: RegistrarConfig,
    /// HA1 per user for MD5 and SHA-256 (RFC 7616 §3.4.2), so the passwords
    /// are not kept.
    secrets: HashMap<String, Ha1s>,
    /// HMAC key for nonces (random per process).
    key: [u8; 32],
    /// Time origin of nonce timestamps.
    epoch: Instant,
    /// AOR user → bindings, in the order they were made.
    bindings: HashMap<String, Vec<Binding>>,
    /// Failure records per source IP and per user name.
    failures: HashMap<FailureKey, Failures>,
    /// Events not yet polled.
    events: VecDeque<RegistrarEvent>,
}

/// The base HA1 of one user for each hash.
struct Ha1s {
    md5: String,
    sha256: String,
}

/// What failures are counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FailureKey {
    Ip(IpAddr),
    User(String),
}

/// Recent failures of one key, and its block.
#[derive(Debug, Default)]
struct Failures {
    /// Times of failures within the window.
    recent: VecDeque<Instant>,
    /// Blocked until then (exclusive).
    blocked_until: Option<Instant>,
}

/// One parsed Contact of a REGISTER with its requested expiry.
struct ContactReq {
    uri: Uri,
    expires: Duration,
}

impl RegistrarConfig {
    /// Settings with the RFC's and the issue's defaults: 3600 s default
    /// expiry, 60 s minimum, 7200 s maximum, 300 s nonces, 5 failures in
    /// 60 s block for 60 s.
    pub fn new(realm: impl Into<String>, users: Vec<(String, String)>) -> RegistrarConfig {
        RegistrarConfig {
            realm: realm.into(),
            users,
            default_expires: Duration::from_secs(3600),
            min_expires: Duration::from_secs(60),
            max_expires: Duration::from_secs(7200),
            nonce_ttl: Duration::from_secs(300),
            algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
            max_failures: 5,
            failure_window: Duration::from_secs(60),
            block_for: Duration::from_secs(60),
        }
    }
}

impl Binding {
    /// Time left at `now` (zero once expired).
    pub fn expires_in(&self, now: Instant) -> Duration {
        self.expires_at.saturating_duration_since(now)
    }
}

impl RegisterError {
    /// The status code and reason phrase answering this error.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            RegisterError::Challenge | RegisterError::Stale => (401, "Unauthorized"),
            RegisterError::BadCredentials(_)
            | RegisterError::Blocked
            | RegisterError::NotAuthorized { .. }
            | RegisterError::TooManyBindings => (403, "Forbidden"),
            RegisterError::NoAor => (404, "Not Found"),
            RegisterError::BadRequest(_) => (400, "Bad Request"),
            RegisterError::TooBrief => (423, "Interval Too Brief"),
            RegisterError::OutOfOrder => (500, "Server Internal Error"),
        }
    }
}

impl Registrar {
    /// A registrar created at `now` (the origin of nonce timestamps); `key`
    /// signs nonces (random in production, fixed in tests).
    pub fn new(cfg: RegistrarConfig, key: [u8; 32], now: Instant) -> Registrar {
        let secrets = cfg
            .users
            .iter()
            .map(|(user, password)| {
                let ha1s = Ha1s {
                    md5: auth::ha1(Algorithm::Md5, user, &cfg.realm, password),
                    sha256: auth::ha1(Algorithm::Sha256, user, &cfg.realm, password),
                };
                (user.clone(), ha1s)
            })
            .collect();
        let cfg = RegistrarConfig { users: Vec::new(), ..cfg };
        Registrar {
            cfg,
            secrets,
            key,
            epoch: now,
            bindings: HashMap::new(),
            failures: HashMap::new(),
            events: VecDeque::new(),
        }
    }

    /// The settings (without passwords).
    pub fn config(&self) -> &RegistrarConfig {
        &self.cfg
    }

    /// Handles one REGISTER (RFC 3261 §10.3) that arrived from `source`
    /// over `transport`, and returns the response to send. Bindings change
    /// only on a 200; events describing the change are queued. Never
    /// panics on any request.
    pub fn handle_register(&mut self, req: &Request, source: SocketAddr, transport: Transport, now: Instant) -> RegisterReply {
        self.expire(now);
        match self.register(req, source, transport, now) {
            Ok(aor) => self.ok_reply(&aor, now),
            Err(e) => {
                tracing::debug!(%source, error = %e, "REGISTER refused");
                self.error_reply(&e, now)
            }
        }
    }

    /// Current bindings of AOR user `user` at `now`, oldest first (expired
    /// ones are left out even before `handle_timeout` removed them).
    pub fn bindings(&self, user: &str, now: Instant) -> Vec<Binding> {
        self.bindings
            .get(user)
            .map(|v| v.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }

    /// Number of bindings held (all AORs).
    pub fn binding_count(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }

    /// When `handle_timeout` must run next: the earliest binding expiry, or
    /// the time a failure record can be forgotten. `None` when idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiries = self.bindings.values().flatten().map(|b| b.expires_at);
        let failures = self.failures.values().filter_map(|f| self.forget_at(f));
        expiries.chain(failures).min()
    }

    /// Removes the bindings expired at `now` (queuing `Unregistered {
    /// reason: Expired }`) and forgets old failure records.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        let forget: Vec<FailureKey> = self
            .failures
            .iter()
            .filter(|(_, f)| self.forget_at(f).is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in forget {
            self.failures.remove(&k);
        }
    }

    /// Next queued event.
    pub fn poll_event(&mut self) -> Option<RegistrarEvent> {
        self.events.pop_front()
    }

    // ------------------------------------------------------------ private

    /// The §10.3 steps; `Ok(aor)` when the bindings were updated or queried.
    fn register(&mut self, req: &Request, source: SocketAddr, transport: Transport, now: Instant) -> Result<String, RegisterError> {
        let aor = req
            .headers
            .to()
            .ok()
            .filter(|to| to.uri.is_sip())
            .and_then(|to| to.uri.user)
            .filter(|u| !u.is_empty());
        let creds = self.our_credentials(req);
        let named = creds.as_ref().and_then(|c| c.as_ref().ok()).map(|c| c.username.clone());
        if self.is_blocked(source.ip(), aor.as_deref(), named.as_deref(), now) {
            return Err(RegisterError::Blocked);
        }
        let aor = aor.ok_or(RegisterError::NoAor)?;
        let creds = match creds {
            None => return Err(RegisterError::Challenge),
            Some(Err(auth::AuthError::Unsupported(_))) => return Err(RegisterError::Challenge),
            Some(Err(e)) => return Err(RegisterError::BadRequest(format!("Bad Request ({e})"))),
            Some(Ok(c)) => c,
        };
        let base = match creds.algorithm {
            Algorithm::Md5 | Algorithm::Md5Sess => Algorithm::Md5,
            Algorithm::Sha256 | Algorithm::Sha256Sess => Algorithm::Sha256,
        };
        if !self.cfg.algorithms.contains(&base) {
            return Err(RegisterError::Challenge);
        }
        let Some(issued) = self.nonce_time(&creds.nonce) else {
            return Err(RegisterError::Challenge);
        };
        if creds.uri != req.uri {
            return Err(RegisterError::BadRequest("Bad Request (digest uri is not the Request-URI)".into()));
        }
        let right = self.secrets.get(&creds.username).is_some_and(|s| {
            let ha1 = match creds.algorithm {
                Algorithm::Md5 | Algorithm::Md5Sess => &s.md5,
                Algorithm::Sha256 | Algorithm::Sha256Sess => &s.sha256,
            };
            creds.verify_ha1(ha1, "REGISTER")
        });
        if !right {
            self.record_failure(source.ip(), &creds.username, now);
            return Err(RegisterError::BadCredentials(creds.username));
        }
        if now.saturating_duration_since(issued) > self.cfg.nonce_ttl {
            return Err(RegisterError::Stale);
        }
        self.failures.remove(&FailureKey::Ip(source.ip()));
        self.failures.remove(&FailureKey::User(creds.username.clone()));
        if creds.username != aor {
            return Err(RegisterError::NotAuthorized { user: creds.username, aor });
        }
        self.update_bindings(req, &aor, source, transport, now)?;
        Ok(aor)
    }

    /// The Authorization value whose realm is ours, parsed (`None` when
    /// there is none). A value that does not parse at all counts as ours.
    fn our_credentials(&self, req: &Request) -> Option<Result<Credentials, auth::AuthError>> {
        let mut first_bad = None;
        for value in req.headers.get_all("Authorization") {
            match Credentials::parse(value) {
                Ok(c) if c.realm == self.cfg.realm => return Some(Ok(c)),
                Ok(_) => {}
                Err(e) => {
                    first_bad.get_or_insert(e);
                }
            }
        }
        first_bad.map(Err)
    }

    /// Contact processing and the binding update (§10.3 steps 6–7).
    fn update_bindings(&mut self, req: &Request, aor: &str, source: SocketAddr, transport: Transport, now: Instant) -> Result<(), RegisterError> {
        let call_id = req.headers.call_id().unwrap_or_default().to_string();
        let cseq = req.headers.cseq().map(|c| c.seq).unwrap_or_default();
        let values = req.headers.list("Contact");
        if values.is_empty() {
            return Ok(()); // a query
        }
        let header_expires = req.headers.get("Expires").and_then(parse_seconds);
        if values.iter().any(|v| v.trim() == "*") {
            if values.len() != 1 || header_expires != Some(0) {
                return Err(RegisterError::BadRequest(
                    "Bad Request (Contact: * needs Expires: 0 and no other Contact)".into(),
                ));
            }
            let existing = self.bindings.get(aor).map(Vec::as_slice).unwrap_or_default();
            if existing.iter().any(|b| b.call_id == call_id && cseq <= b.cseq) {
                return Err(RegisterError::OutOfOrder);
            }
            for b in self.bindings.remove(aor).unwrap_or_default() {
                self.unregistered(b, UnregisterReason::Removed);
            }
            return Ok(());
        }
        let mut wanted = Vec::with_capacity(values.len());
        for v in values {
            let na = NameAddr::parse(v).map_err(|e| RegisterError::BadRequest(format!("Bad Request (Contact: {e})")))?;
            if !na.uri.is_sip() {
                return Err(RegisterError::BadRequest("Bad Request (Contact is not a SIP URI)".into()));
            }
            let asked = na
                .param("expires")
                .flatten()
                .and_then(parse_seconds)
                .or(header_expires)
                .map(Duration::from_secs)
                .unwrap_or(self.cfg.default_expires);
            wanted.push(ContactReq { uri: na.uri, expires: asked });
        }
        if wanted.iter().any(|c| !c.expires.is_zero() && c.expires < self.cfg.min_expires) {
            return Err(RegisterError::TooBrief);
        }
        let existing = self.bindings.get(aor).map(Vec::as_slice).unwrap_or_default();
        let mut added = 0;
        for c in &wanted {
            match existing.iter().find(|b| same_contact(&b.contact, &c.uri)) {
                Some(b) if b.call_id == call_id && cseq <= b.cseq => return Err(RegisterError::OutOfOrder),
                Some(_) => {}
                None if !c.expires.is_zero() => added += 1,
                None => {}
            }
        }
        if existing.len() + added > MAX_BINDINGS_PER_AOR {
            return Err(RegisterError::TooManyBindings);
        }
        for c in wanted {
            let list = self.bindings.entry(aor.to_string()).or_default();
            let pos = list.iter().position(|b| same_contact(&b.contact, &c.uri));
            if c.expires.is_zero() {
                if let Some(b) = pos.map(|p| list.remove(p)) {
                    self.unregistered(b, UnregisterReason::Removed);
                }
                continue;
            }
            let expires = c.expires.min(self.cfg.max_expires);
            let binding = Binding {
                aor: aor.to_string(),
                contact: c.uri.raw.clone(),
                source,
                transport,
                expires_at: now + expires,
                call_id: call_id.clone(),
                cseq,
            };
            match pos.and_then(|p| list.get_mut(p)) {
                Some(slot) => *slot = binding,
                None => list.push(binding),
            }
            self.events.push_back(RegistrarEvent::Registered {
                aor: aor.to_string(),
                contact: c.uri.raw,
                source,
                expires,
            });
        }
        if self.bindings.get(aor).is_some_and(Vec::is_empty) {
            self.bindings.remove(aor);
        }
        Ok(())
    }

    /// 200 OK listing every binding of `aor` with its remaining expiry.
    fn ok_reply(&self, aor: &str, now: Instant) -> RegisterReply {
        let headers = self
            .bindings(aor, now)
            .into_iter()
            .map(|b| ("Contact".to_string(), format!("<{}>;expires={}", b.contact, b.expires_in(now).as_secs())))
            .collect();
        RegisterReply { status: 200, reason: "OK".into(), headers }
    }

    fn error_reply(&self, e: &RegisterError, now: Instant) -> RegisterReply {
        let (status, reason) = e.status();
        let mut headers = Vec::new();
        let mut reason = reason.to_string();
        match e {
            RegisterError::Challenge | RegisterError::Stale => {
                let nonce = self.nonce(now);
                for &algorithm in &self.cfg.algorithms {
                    let ch = Challenge {
                        realm: self.cfg.realm.clone(),
                        nonce: nonce.clone(),
                        opaque: None,
                        algorithm,
                        qop: vec!["auth".into()],
                        stale: *e == RegisterError::Stale,
                    };
                    headers.push(("WWW-Authenticate".to_string(), ch.to_header_value()));
                }
            }
            RegisterError::TooBrief => {
                headers.push(("Min-Expires".to_string(), self.cfg.min_expires.as_secs().to_string()));
            }
            RegisterError::BadRequest(r) => reason = r.clone(),
            _ => {}
        }
        RegisterReply { status, reason, headers }
    }

    /// A fresh nonce for `now`.
    fn nonce(&self, now: Instant) -> String {
        let t = u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        let ts = format!("{t:016x}");
        let mac = self.nonce_mac(&ts);
        format!("{ts}{}", mac.get(..NONCE_MAC_HEX).unwrap_or_default())
    }

    /// When `nonce` was issued, if skald issued it (`None`: forged,
    /// malformed, or from another process).
    fn nonce_time(&self, nonce: &str) -> Option<Instant> {
        if nonce.len() != 16 + NONCE_MAC_HEX || !nonce.is_ascii() {
            return None;
        }
        let (ts, mac) = nonce.split_at(16);
        let expected = self.nonce_mac(ts);
        let ok = expected
            .get(..NONCE_MAC_HEX)
            .is_some_and(|e| e.bytes().zip(mac.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0);
        if !ok {
            return None;
        }
        let t = u64::from_str_radix(ts, 16).ok()?;
        self.epoch.checked_add(Duration::from_millis(t))
    }

    /// Hex HMAC-SHA256 over realm and timestamp.
    fn nonce_mac(&self, ts: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(self.cfg.realm.as_bytes());
        mac.update(b":");
        mac.update(ts.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn is_blocked(&self, ip: IpAddr, aor: Option<&str>, user: Option<&str>, now: Instant) -> bool {
        let blocked = |k: FailureKey| {
            self.failures
                .get(&k)
                .and_then(|f| f.blocked_until)
                .is_some_and(|until| now < until)
        };
        blocked(FailureKey::Ip(ip))
            || aor.is_some_and(|u| blocked(FailureKey::User(u.to_string())))
            || user.is_some_and(|u| blocked(FailureKey::User(u.to_string())))
    }

    /// Counts a failed authentication against the source IP and the user
    /// name; starts a block (and logs it once) at `max_failures`.
    fn record_failure(&mut self, ip: IpAddr, user: &str, now: Instant) {
        let keys = [FailureKey::Ip(ip), FailureKey::User(user.to_string())];
        let (window, max, block_for) = (self.cfg.failure_window, self.cfg.max_failures, self.cfg.block_for);
        for key in keys {
            if self.failures.len() >= MAX_TRACKED && !self.failures.contains_key(&key) {
                continue;
            }
            let f = self.failures.entry(key.clone()).or_default();
            while f.recent.front().is_some_and(|t| now.saturating_duration_since(*t) >= window) {
                f.recent.pop_front();
            }
            f.recent.push_back(now);
            if f.recent.len() >= max && f.blocked_until.is_none_or(|u| u <= now) {
                f.blocked_until = Some(now + block_for);
                f.recent.clear();
                match &key {
                    FailureKey::Ip(ip) => tracing::warn!(
                        source_ip = %ip, failures = max, block_s = block_for.as_secs(),
                        "sip registrar: too many failed authentications from this address; REGISTERs get 403"
                    ),
                    FailureKey::User(u) => tracing::warn!(
                        user = %u, failures = max, block_s = block_for.as_secs(),
                        "sip registrar: too many failed authentications for this user; REGISTERs get 403"
                    ),
                }
            }
        }
    }

    /// When a failure record holds nothing any more.
    fn forget_at(&self, f: &Failures) -> Option<Instant> {
        let last = f.recent.back().map(|t| *t + self.cfg.failure_window);
        [last, f.blocked_until].into_iter().flatten().max()
    }

    /// Removes bindings expired at `now`.
    fn expire(&mut self, now: Instant) {
        let mut gone = Vec::new();
        for list in self.bindings.values_mut() {
            let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(list).into_iter().partition(|b| b.expires_at <= now);
            *list = live;
            gone.extend(dead);
        }
        self.bindings.retain(|_, v| !v.is_empty());
        for b in gone {
            self.unregistered(b, UnregisterReason::Expired);
        }
    }

    fn unregistered(&mut self, b: Binding, reason: UnregisterReason) {
        self.events.push_back(RegistrarEvent::Unregistered { aor: b.aor, contact: b.contact, reason });
    }
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("cfg", &self.cfg)
            .field("bindings", &self.bindings)
            .field("failures", &self.failures.len())
            .finish_non_exhaustive()
    }
}

/// A delta-seconds value (`Expires`, `expires=`); huge values saturate.
fn parse_seconds(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(t.parse::<u64>().unwrap_or(u64::MAX))
}

/// Whether a stored Contact and a new one are the same URI for binding
/// purposes (a simplified RFC 3261 §19.1.4: scheme and host case-
/// insensitive, user and port exact, `transport` parameter compared, other
/// parameters ignored).
fn same_contact(stored: &str, uri: &Uri) -> bool {
    let Ok(a) = Uri::parse(stored) else { return stored == uri.raw };
    a.scheme == uri.scheme
        && a.user == uri.user
        && a.host.eq_ignore_ascii_case(&uri.host)
        && a.port == uri.port
        && a.transport() == uri.transport()
}
