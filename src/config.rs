//! Typed configuration: `sip-config/skald.yaml` plus command-line overrides.
//!
//! Owns parsing and validation. Every error names the file, the line and what
//! is wrong, so `skald check-config` and `skald serve` fail at start instead
//! of mid-call. Unknown keys are errors (a typo must not be silently ignored).
//! Secrets (Twilio credentials, the call-context key) are resolved only here,
//! from the environment.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A configuration error, pointing at the offending place.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// Path of the file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or a field has the wrong type or name.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// Path of the file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// An agent file under `agents_dir` is bad (names its own file and line).
    #[error(transparent)]
    Agent(#[from] crate::agent::flow::AgentConfigError),
    /// The contact center's `queues_file` is bad (names its own file and line).
    #[error(transparent)]
    Queues(#[from] crate::contact_center::config::QueueConfigError),
    /// The YAML is well-formed but a value is not acceptable.
    #[error("{file}:{line}: {field}: {message}")]
    Invalid {
        /// Path of the file.
        file: PathBuf,
        /// 1-based line of the field (0 when it comes from a flag).
        line: usize,
        /// Dotted path of the field, e.g. `routes.dids.+15550100`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration of one skald instance.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// SIP signaling settings.
    pub sip: SipConfig,
    /// RTP media settings.
    pub rtp: RtpConfig,
    /// HTTP API settings.
    pub http: HttpConfig,
    /// Call-record store.
    pub store: StoreConfig,
    /// Directory for the database file and recordings; created at start.
    pub data_dir: PathBuf,
    /// Logging.
    pub logging: LoggingConfig,
    /// DID routing: which called number runs which application.
    pub routes: RoutesConfig,
    /// Named applications that routes refer to.
    pub applications: BTreeMap<String, AppConfig>,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Directory of agent definitions (`*.yaml`), relative to the config file.
    pub agents_dir: PathBuf,
    /// Local model files; default `SKALD_MODELS_DIR` or `~/.cache/skald/models`.
    pub models_dir: Option<PathBuf>,
    /// Twilio: inbound webhook, Media Streams and the REST client.
    pub twilio: TwilioConfig,
    /// LiveKit: the project phone calls are bridged into (cloud or on-prem).
    pub livekit: LiveKitConfig,
    /// SIP trunks (carriers, PBXs) that outbound calls go through, by name.
    pub trunks: BTreeMap<String, TrunkConfig>,
    /// Directory the config file was loaded from; relative paths in the
    /// config (prompts) resolve against it. Not read from YAML.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// HMAC key signing call contexts in SIP headers (`X-Skald-Context`),
    /// from `SKALD_CONTEXT_KEY` only (never the file, never printed). When
    /// that is unset, [`Config::load`] puts a random per-process key here, so
    /// contexts from other instances are not trusted. `None` only in a
    /// config not made by `load` (tests).
    #[serde(skip)]
    pub context_key: Option<String>,
    /// The contact center's human agents and queues (`sip-config/queues.yaml`;
    /// relative to this file). Absent: no queues (an escalation to a queue
    /// is refused and the agent goes on).
    pub queues_file: Option<PathBuf>,
    /// The loaded and validated `queues_file` (not read from YAML).
    #[serde(skip)]
    pub contact_center: Option<Arc<crate::contact_center::config::ContactCenterConfig>>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured so a new field cannot be forgotten here.
        let Config {
            sip,
            rtp,
            http,
            store,
            data_dir,
            logging,
            routes,
            applications,
            shutdown,
            agents_dir,
            models_dir,
            twilio,
            livekit,
            trunks,
            base_dir,
            context_key,
            queues_file,
            contact_center,
        } = self;
        f.debug_struct("Config")
            .field("sip", sip)
            .field("rtp", rtp)
            .field("http", http)
            .field("store", store)
            .field("data_dir", data_dir)
            .field("logging", logging)
            .field("routes", routes)
            .field("applications", applications)
            .field("shutdown", shutdown)
            .field("agents_dir", agents_dir)
            .field("models_dir", models_dir)
            .field("twilio", twilio)
            .field("livekit", livekit)
            .field("trunks", trunks)
            .field("base_dir", base_dir)
            .field("context_key", &context_key.as_ref().map(|_| "<set>"))
            .field("queues_file", queues_file)
            .field("contact_center", &contact_center.as_ref().map(|c| c.queues.len()))
            .finish()
    }
}

/// SIP signaling (RFC 3261).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Address for UDP and TCP listeners, e.g. `0.0.0.0:5060`.
    pub listen: SocketAddr,
    /// Host (IP or name) written in Via/Contact; defaults to the listen IP,
    /// or the first non-loopback local IP when listening on 0.0.0.0.
    pub advertised_host: Option<String>,
    /// Value of the User-Agent / Server header.
    pub user_agent: String,
    /// RFC 3261 T1 (RTT estimate), ms. Default 500.
    pub t1_ms: u64,
    /// RFC 3261 T2 (max non-INVITE retransmit interval), ms. Default 4000.
    pub t2_ms: u64,
    /// RFC 3261 T4 (max message lifetime in the network), ms. Default 5000.
    pub t4_ms: u64,
    /// Send 180 Ringing before answering.
    pub send_ringing: bool,
    /// Delay between 180 and 200, ms (0 = answer at once).
    pub answer_delay_ms: u64,
    /// The registrar for agents' SIP phones (RFC 3261 §10.3); absent: no
    /// registrar, REGISTER gets 405.
    pub registrar: Option<SipRegistrarConfig>,
}

/// `sip.registrar`: SIP phones register here with digest auth (RFC 3261
/// §10.3, §22). Passwords come from the environment only: each user names
/// the variable in `password_env`, resolved by [`Config::load`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipRegistrarConfig {
    /// Digest realm (RFC 3261 §22.1), e.g. `skald`.
    pub realm: String,
    /// Users allowed to register (their AOR is `sip:USER@…`).
    pub users: Vec<RegistrarUserConfig>,
    /// Expiry when a REGISTER names none, s (RFC 3261: 3600).
    #[serde(default = "default_reg_expires")]
    pub default_expires_s: u64,
    /// Shorter non-zero expiries get 423 with Min-Expires, s (60).
    #[serde(default = "default_reg_min_expires")]
    pub min_expires_s: u64,
    /// Longer expiries are cut to this, s (7200).
    #[serde(default = "default_reg_max_expires")]
    pub max_expires_s: u64,
    /// Digest algorithms challenged with, in preference order (RFC 8760):
    /// `MD5`, `SHA-256`. Default both, MD5 first. Some phones (libre-based,
    /// e.g. baresip 1.0) fail on any challenge they cannot answer: list
    /// only `MD5` for them.
    #[serde(default = "default_reg_algorithms")]
    pub algorithms: Vec<String>,
}

/// One registrar user.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarUserConfig {
    /// SIP user name (the AOR's user part and the digest username).
    pub user: String,
    /// Name of the environment variable holding the password.
    pub password_env: String,
    /// The password, resolved from `password_env` at load. Not read from YAML.
    #[serde(skip)]
    pub password: Option<String>,
}

impl std::fmt::Debug for RegistrarUserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrarUserConfig")
            .field("user", &self.user)
            .field("password_env", &self.password_env)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .finish()
    }
}

fn default_reg_expires() -> u64 {
    3600
}
fn default_reg_min_expires() -> u64 {
    60
}
fn default_reg_max_expires() -> u64 {
    7200
}
fn default_reg_algorithms() -> Vec<String> {
    vec!["MD5".into(), "SHA-256".into()]
}

/// RTP media (RFC 3550/3551).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtpConfig {
    /// Port range for RTP, `LOW-HIGH` inclusive; RTP takes even ports, RTCP
    /// the odd port above it.
    pub ports: PortRange,
    /// IP written in SDP `c=`; defaults to the SIP advertised host when it is
    /// an IP, else the listen IP.
    pub advertised_ip: Option<IpAddr>,
    /// Codecs offered/accepted in preference order: `PCMU`, `PCMA`.
    pub codecs: Vec<String>,
    /// Packetization time, ms (20 is the telephony norm).
    pub ptime_ms: u32,
    /// Jitter buffer target depth, ms.
    pub jitter_ms: u32,
    /// A call whose RTP stays silent this long (s) is ended with BYE.
    pub inactivity_timeout_s: u64,
}

/// HTTP API and who may use it.
///
/// Every route but health, login and Twilio's signed ones needs a token
/// (see `http::auth`). Tokens come only from the environment: the admin
/// token from `SKALD_ADMIN_TOKEN`, each entry of `tokens:` from the variable
/// its `token_env` names; both are resolved in [`Config::load`].
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address for health, metrics and the API.
    pub listen: SocketAddr,
    /// Named API tokens with their role and, for supervisors, the queues
    /// they may act on.
    pub tokens: Vec<TokenConfig>,
    /// The first admin token, from `SKALD_ADMIN_TOKEN` at load. Not read
    /// from YAML.
    #[serde(skip)]
    pub admin_token: Option<String>,
    /// Reverse proxies (addresses or CIDR networks, e.g. `10.0.0.0/8`)
    /// whose `X-Forwarded-For` names the client: requests from them are
    /// rate-limited by the address the header gives (the nearest one that
    /// is not itself a trusted proxy), not by the proxy's. Empty: the
    /// header is ignored (anyone could write it).
    #[serde(deserialize_with = "trusted_proxies")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// `http.trusted_proxies`: each entry an IP address (a /32 or /128) or a
/// CIDR network; a bad one is an error at its own line.
fn trusted_proxies<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    /// One entry, parsed where it stands (so an error names its line).
    struct Net(ipnet::IpNet);
    impl<'de> Deserialize<'de> for Net {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let e = String::deserialize(d)?;
            e.parse::<ipnet::IpNet>()
                .or_else(|_| e.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(Net)
                .map_err(|_| serde::de::Error::custom(format!("`{e}` is neither an IP address nor a CIDR network")))
        }
    }
    Ok(Vec::<Net>::deserialize(d)?.into_iter().map(|n| n.0).collect())
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("tokens", &self.tokens)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

/// A role of an API principal, from least to most allowed: each role may
/// do everything the roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: call lists and details, the event stream, metrics, the API
    /// description.
    Viewer,
    /// A viewer who may also act on calls (hang up, transfer, listen…) of
    /// its allowed queues.
    Supervisor,
    /// Everything, including placing calls.
    Admin,
}

impl Role {
    /// The role's name as written in the config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One named API token under `http.tokens`. The secret itself is read from
/// the environment variable `token_env` names (never from the file).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds the token (shown in audit events), unique.
    pub name: String,
    /// What the holder may do: `admin`, `supervisor` or `viewer`.
    pub role: Role,
    /// Name of the environment variable holding the token.
    pub token_env: String,
    /// Queues a supervisor may act on; empty: all.
    #[serde(default)]
    pub queues: Vec<String>,
    /// The token, resolved from `token_env` at load. Not read from YAML.
    #[serde(skip)]
    pub token: Option<String>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("token_env", &self.token_env)
            .field("queues", &self.queues)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl HttpConfig {
    /// Reads `SKALD_ADMIN_TOKEN` and each token's `token_env`. Errors: the
    /// field and message of a variable that is unset or empty, or of a
    /// token equal to another one.
    fn resolve_env(&mut self) -> Result<(), (String, String, String)> {
        self.admin_token = std::env::var("SKALD_ADMIN_TOKEN").ok().filter(|v| !v.is_empty());
        let mut seen: Vec<(&str, &str)> = self.admin_token.iter().map(|t| ("SKALD_ADMIN_TOKEN", t.as_str())).collect();
        for (i, t) in self.tokens.iter_mut().enumerate() {
            match std::env::var(&t.token_env) {
                Ok(v) if !v.is_empty() => t.token = Some(v),
                _ => {
                    return Err((
                        format!("http.tokens[{i}].token_env"),
                        t.token_env.clone(),
                        format!("environment variable `{}` (the token of `{}`) is not set", t.token_env, t.name),
                    ));
                }
            }
        }
        for (i, t) in self.tokens.iter().enumerate() {
            let secret = t.token.as_deref().unwrap_or_default();
            if let Some((other, _)) = seen.iter().find(|(_, s)| *s == secret) {
                return Err((
                    format!("http.tokens[{i}].token_env"),
                    t.token_env.clone(),
                    format!("the token in `{}` is the same as the one in `{other}`; each holder needs its own", t.token_env),
                ));
            }
            seen.push((t.token_env.as_str(), secret));
        }
        Ok(())
    }
}

/// Twilio (Programmable Voice): the inbound voice webhook, Media Streams and
/// the REST client. Secrets come from the environment when set there:
/// `livekit:` — the LiveKit project (LiveKit Cloud, or a self-hosted
/// livekit-server with livekit-sip). The API key and secret come from the
/// environment only (`LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET`);
/// `LIVEKIT_URL` wins over `url`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveKitConfig {
    /// Project URL (`wss://my-project.livekit.cloud`, `ws://livekit:7880`).
    pub url: Option<String>,
    /// Prefix of the rooms phone calls are dispatched into
    /// (`skald livekit sip setup`).
    pub room_prefix: String,
    /// The project's SIP host (`<id>.sip.livekit.cloud`, or livekit-sip's
    /// `host:port` on-prem); `LIVEKIT_SIP_HOST` wins.
    pub sip_host: Option<String>,
    /// Twilio numbers whose calls go to LiveKit SIP: their webhook answers
    /// `<Dial><Sip>sip:NUMBER@sip_host;transport=tcp</Sip>` with the call's
    /// context headers (and `LIVEKIT_SIP_USERNAME`/`LIVEKIT_SIP_PASSWORD`,
    /// the inbound trunk's credentials, when set).
    pub twilio_dids: Vec<String>,
    /// Digest user for Twilio's INVITE to LiveKit SIP, from
    /// `LIVEKIT_SIP_USERNAME` only.
    #[serde(skip)]
    pub sip_username: Option<String>,
    /// Digest password, from `LIVEKIT_SIP_PASSWORD` only (never printed).
    #[serde(skip)]
    pub sip_password: Option<String>,
    /// API key, from `LIVEKIT_API_KEY` only.
    #[serde(skip)]
    pub api_key: Option<String>,
    /// API secret, from `LIVEKIT_API_SECRET` only (never printed).
    #[serde(skip)]
    pub api_secret: Option<String>,
}

impl Default for LiveKitConfig {
    fn default() -> Self {
        LiveKitConfig {
            url: None,
            room_prefix: "call-".into(),
            sip_host: None,
            twilio_dids: Vec::new(),
            sip_username: None,
            sip_password: None,
            api_key: None,
            api_secret: None,
        }
    }
}

impl std::fmt::Debug for LiveKitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKitConfig")
            .field("url", &self.url)
            .field("room_prefix", &self.room_prefix)
            .field("sip_host", &self.sip_host)
            .field("twilio_dids", &self.twilio_dids)
            .field("sip_username", &self.sip_username)
            .field("sip_password", &self.sip_password.as_ref().map(|_| "<set>"))
            .field("api_key", &self.api_key)
            .field("api_secret", &self.api_secret.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl LiveKitConfig {
    /// Takes `LIVEKIT_URL` (over `url`), `LIVEKIT_API_KEY` and
    /// `LIVEKIT_API_SECRET` from the environment (empty values count as
    /// unset).
    pub fn resolve_env(&mut self) {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(u) = var("LIVEKIT_URL") {
            self.url = Some(u);
        }
        if let Some(h) = var("LIVEKIT_SIP_HOST") {
            self.sip_host = Some(h);
        }
        self.sip_username = var("LIVEKIT_SIP_USERNAME");
        self.sip_password = var("LIVEKIT_SIP_PASSWORD");
        self.api_key = var("LIVEKIT_API_KEY");
        self.api_secret = var("LIVEKIT_API_SECRET");
    }
}

/// `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`, `TWILIO_API_KEY`,
/// `TWILIO_API_SECRET` win over the file (resolved in [`Config::load`]).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioConfig {
    /// Account SID (`AC…`): the REST API's account and the expected
    /// `AccountSid` of webhooks.
    pub account_sid: Option<String>,
    /// Auth Token: signs webhooks (`X-Twilio-Signature`) and, without an API
    /// key, authenticates REST calls.
    pub auth_token: Option<String>,
    /// API key SID (`SK…`) for REST calls, used with `api_key_secret`
    /// instead of the Auth Token when both are set.
    pub api_key_sid: Option<String>,
    /// API key secret.
    pub api_key_secret: Option<String>,
    /// Public base URL Twilio reaches this server at, e.g.
    /// `https://voice.example.com` (behind a TLS-terminating proxy). When
    /// unset, it is rebuilt per request from `X-Forwarded-Proto`/`Host`.
    pub public_url: Option<String>,
    /// REST API base URL (tests aim it at a local server).
    pub api_base_url: String,
    /// Check `X-Twilio-Signature` on webhooks (default true; turning it off
    /// is logged loudly at start).
    pub validate_signature: bool,
    /// DID → SIP URI: calls to these numbers are answered with
    /// `<Dial><Sip>` to that URI (skald's own SIP address or a LiveKit SIP
    /// URI) carrying the call's context in headers; all other routed
    /// numbers get `<Connect><Stream>` to this server's Media Streams
    /// endpoint.
    pub dial_sip: BTreeMap<String, String>,
}

impl std::fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "<set>");
        f.debug_struct("TwilioConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &hidden(&self.auth_token))
            .field("api_key_sid", &self.api_key_sid)
            .field("api_key_secret", &hidden(&self.api_key_secret))
            .field("public_url", &self.public_url)
            .field("api_base_url", &self.api_base_url)
            .field("validate_signature", &self.validate_signature)
            .field("dial_sip", &self.dial_sip)
            .finish()
    }
}

impl Default for TwilioConfig {
    fn default() -> Self {
        TwilioConfig {
            account_sid: None,
            auth_token: None,
            api_key_sid: None,
            api_key_secret: None,
            public_url: None,
            api_base_url: "https://api.twilio.com".into(),
            validate_signature: true,
            dial_sip: BTreeMap::new(),
        }
    }
}

impl TwilioConfig {
    /// Takes secrets from the environment where set (they win over the file).
    pub fn resolve_env(&mut self) {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(v) = env("TWILIO_ACCOUNT_SID") {
            self.account_sid = Some(v);
        }
        if let Some(v) = env("TWILIO_AUTH_TOKEN") {
            self.auth_token = Some(v);
        }
        if let Some(v) = env("TWILIO_API_KEY") {
            self.api_key_sid = Some(v);
        }
        if let Some(v) = env("TWILIO_API_SECRET") {
            self.api_key_secret = Some(v);
        }
    }
}

/// One SIP trunk: where outbound calls go, who they are from, and the
/// digest credentials the trunk challenges for. The password is read from
/// the environment variable `password_env` names (never from the file) by
/// [`Config::load`].
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// The trunk's proxy/registrar, `sip:HOST[:PORT]`; calls to a number go
    /// to `sip:NUMBER@HOST[:PORT]`.
    pub uri: String,
    /// Digest username (RFC 8760 / 2617) when the trunk challenges.
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the environment variable that holds the digest password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Caller ID: the From user part, e.g. `+15550123` (default `skald`).
    #[serde(default)]
    pub caller_id: Option<String>,
    /// Display name of From.
    #[serde(default)]
    pub from_display: Option<String>,
    /// CANCEL when not answered within this many seconds (30).
    #[serde(default = "default_ring_timeout")]
    pub ring_timeout_s: u64,
    /// Signaling transport to the trunk (`udp` or `tcp`).
    #[serde(default)]
    pub transport: TrunkTransport,
    /// The password, resolved from `password_env` at load. Not read from YAML.
    #[serde(skip)]
    pub password: Option<String>,
}

impl std::fmt::Debug for TrunkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkConfig")
            .field("uri", &self.uri)
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .field("caller_id", &self.caller_id)
            .field("from_display", &self.from_display)
            .field("ring_timeout_s", &self.ring_timeout_s)
            .field("transport", &self.transport)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Signaling transport of a trunk.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TrunkTransport {
    /// UDP (RFC 3261 §18).
    #[default]
    Udp,
    /// TCP.
    Tcp,
}

impl TrunkConfig {
    /// `(host, port)` of the trunk URI; `None` when it is not `sip:HOST[:PORT]`.
    pub fn host_port(&self) -> Option<(String, Option<u16>)> {
        let rest = self.uri.strip_prefix("sip:").or_else(|| self.uri.strip_prefix("SIP:"))?;
        let rest = rest.split(';').next().unwrap_or("");
        if rest.is_empty() || rest.contains('@') || rest.contains('/') {
            return None;
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(']') || h.ends_with(']') => match p.parse::<u16>() {
                Ok(p) if p > 0 => (h, Some(p)),
                _ => return None,
            },
            _ => (rest, None),
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '<' || c == '>') {
            return None;
        }
        Some((host.to_string(), port))
    }

    /// The Request-URI for `user` (a number) through this trunk:
    /// `sip:USER@HOST[:PORT][;transport=tcp]`.
    pub fn request_uri(&self, user: &str) -> Option<String> {
        let (host, port) = self.host_port()?;
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let transport = match self.transport {
            TrunkTransport::Udp => "",
            TrunkTransport::Tcp => ";transport=tcp",
        };
        Some(format!("sip:{user}@{host}{port}{transport}"))
    }

    /// Reads the password from the environment variable `password_env`.
    fn resolve_env(&mut self) -> Result<(), String> {
        let Some(var) = &self.password_env else { return Ok(()) };
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => {
                self.password = Some(v);
                Ok(())
            }
            _ => Err(format!("environment variable `{var}` (the trunk password) is not set")),
        }
    }
}

/// True for a usable environment variable name (ASCII letters, digits, `_`).
fn is_env_var_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// True for a phone number a trunk can dial: an optional `+`, then 1–32
/// digits (`*` and `#` allowed for service codes).
pub fn is_dialable_number(n: &str) -> bool {
    let digits = n.strip_prefix('+').unwrap_or(n);
    !digits.is_empty()
        && digits.len() <= 32
        && digits.chars().all(|c| c.is_ascii_digit() || c == '*' || c == '#')
}

fn default_ring_timeout() -> u64 {
    30
}

/// Call-record store.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://FILE` or `postgres://…`; default: `sqlite://<data_dir>/skald.db`.
    pub database_url: Option<String>,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// `tracing` filter directive, e.g. `info` or `skald=debug`.
    pub level: String,
    /// Redact caller numbers and IP addresses in logs (default true).
    pub redact_pii: bool,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Routing of called numbers (DIDs) to applications.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RoutesConfig {
    /// Application for numbers not listed; `None` answers them 404.
    pub default: Option<String>,
    /// Called number (user part of the Request-URI, e.g. `+15550100` or
    /// `echo`) → application name.
    pub dids: BTreeMap<String, String>,
}

/// One application, tagged by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AppConfig {
    /// Sends back what it hears (media testing).
    Echo {},
    /// Plays a WAV prompt, then records the caller until hangup or `#`.
    Greeting {
        /// WAV file of any rate/channels; relative to the config directory.
        prompt: PathBuf,
        /// Longest recording, s.
        #[serde(default = "default_max_record")]
        max_record_s: u64,
    },
    /// Plays a prompt, collects digits, routes to another application.
    DtmfMenu {
        /// WAV prompt; relative to the config directory.
        prompt: PathBuf,
        /// Digit string → application name.
        options: BTreeMap<String, String>,
        /// Inter-digit / first-digit timeout, s.
        #[serde(default = "default_digit_timeout")]
        timeout_s: u64,
        /// Prompts before giving up and hanging up.
        #[serde(default = "default_tries")]
        max_tries: u32,
    },
    /// A spoken conversation with a flow agent from `agents_dir`, on the
    /// local models (Silero VAD, Moonshine STT, Piper TTS).
    VoiceAgent {
        /// The agent's `name:` in an agents file.
        agent: String,
        /// Record the call: stereo WAV, caller left, agent right, 16 kHz.
        #[serde(default)]
        record: bool,
        /// Turn detection thresholds.
        #[serde(default)]
        turn: Box<crate::pipeline::turn::TurnConfig>,
        /// Caller voicing that pauses the agent's audio, ms (counted in
        /// 32 ms VAD windows, so 80 acts after 96 ms of speech). The pause
        /// is undone when the run dies out before it is a turn (noise), or
        /// when its words are only a backchannel.
        #[serde(default = "default_barge_in")]
        barge_in_min_ms: u64,
        /// WAV played when speech synthesis itself fails; relative to the
        /// config directory.
        #[serde(default)]
        fallback_prompt: Option<PathBuf>,
        /// Cloud speech recognition (`deepgram: {…}`; the local model takes
        /// over when it fails, and the call record says so), or a load-test
        /// stand-in (`fixed: {text: …}`). Default: local.
        #[serde(default)]
        stt: Option<Box<SttChoice>>,
        /// Cloud speech synthesis (`elevenlabs: {…}` or `openai: {…}`; the
        /// local voice takes over when it fails), or a load-test stand-in
        /// (`tone: {ms: …}`, `wav: {file: …}`). Default: local.
        #[serde(default)]
        tts: Option<Box<TtsChoice>>,
        /// Answering-machine detection on this application's outbound
        /// calls (absent: none; `enabled: false` turns it off).
        #[serde(default)]
        amd: Option<crate::pipeline::amd::AmdConfig>,
    },
    /// The supervisors' dial-in line: a SIP phone calls it (a feature code
    /// or DID routed here), enters the PIN, picks a live call by the last
    /// digits of its caller's number, and listens; keys 1–4 switch to
    /// listen, whisper, barge, take over (see
    /// [`crate::contact_center::supervisor`]).
    SupervisorDialIn {
        /// Environment variable holding the PIN (digits only).
        pin_env: String,
        /// The PIN, read from `pin_env` at load (never from the file).
        #[serde(skip)]
        pin: Option<String>,
    },
}

/// A voice agent's STT other than the local model: a cloud provider (keys
/// from the environment only: `api_key_env` names the variable), or a
/// stand-in for load tests ([`crate::providers::standin`]).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SttChoice {
    /// Deepgram streaming (WebSocket).
    Deepgram(crate::providers::deepgram::DeepgramConfig),
    /// Load tests: the same transcript at every turn end, at once.
    Fixed(crate::providers::standin::FixedSttConfig),
}

/// A voice agent's TTS other than the local voice: a cloud provider, or a
/// stand-in for load tests.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum TtsChoice {
    /// ElevenLabs WebSocket input streaming.
    Elevenlabs(crate::providers::elevenlabs::ElevenLabsConfig),
    /// OpenAI `audio/speech`, streamed PCM.
    Openai(crate::providers::openai_tts::OpenAiTtsConfig),
    /// Load tests: a tone of a given length for every sentence.
    Tone(crate::providers::standin::ToneConfig),
    /// Load tests: a WAV file's audio for every sentence.
    Wav(crate::providers::standin::WavConfig),
}

fn default_barge_in() -> u64 {
    80
}

fn default_max_record() -> u64 {
    120
}
fn default_digit_timeout() -> u64 {
    5
}
fn default_tries() -> u32 {
    3
}

/// Graceful shutdown.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Seconds live calls get to finish after SIGTERM before skald sends BYE.
    pub grace_s: u64,
}

/// An inclusive UDP port range written `LOW-HIGH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port (inclusive).
    pub low: u16,
    /// Last port (inclusive).
    pub high: u16,
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("`{s}` is not LOW-HIGH"))?;
        let low: u16 = a.trim().parse().map_err(|_| format!("`{a}` is not a port"))?;
        let high: u16 = b.trim().parse().map_err(|_| format!("`{b}` is not a port"))?;
        if low == 0 || high < low.saturating_add(1) {
            return Err(format!("`{s}`: need 0 < LOW < HIGH (two ports per call)"));
        }
        Ok(PortRange { low, high })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: "0.0.0.0:5060".parse().expect("static"),
            advertised_host: None,
            user_agent: format!("skald/{}", env!("CARGO_PKG_VERSION")),
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            send_ringing: true,
            answer_delay_ms: 0,
            registrar: None,
        }
    }
}

impl Default for RtpConfig {
    fn default() -> Self {
        RtpConfig {
            ports: PortRange { low: 20000, high: 20999 },
            advertised_ip: None,
            codecs: vec!["PCMU".into(), "PCMA".into()],
            ptime_ms: 20,
            jitter_ms: 60,
            inactivity_timeout_s: 30,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: "127.0.0.1:8080".parse().expect("static"), tokens: Vec::new(), admin_token: None, trusted_proxies: Vec::new() }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig { format: LogFormat::Text, level: "info".into(), redact_pii: true }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace_s: 10 }
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut applications = BTreeMap::new();
        applications.insert("echo".to_string(), AppConfig::Echo {});
        Config {
            sip: SipConfig::default(),
            rtp: RtpConfig::default(),
            http: HttpConfig::default(),
            store: StoreConfig::default(),
            data_dir: PathBuf::from("data"),
            logging: LoggingConfig::default(),
            routes: RoutesConfig { default: Some("echo".into()), dids: BTreeMap::new() },
            applications,
            shutdown: ShutdownConfig::default(),
            agents_dir: PathBuf::from("agents"),
            models_dir: None,
            twilio: TwilioConfig::default(),
            livekit: LiveKitConfig::default(),
            trunks: BTreeMap::new(),
            base_dir: PathBuf::from("."),
            context_key: None,
            queues_file: None,
            contact_center: None,
        }
    }
}

impl Config {
    /// Loads and validates a YAML file. Errors: [`ConfigError::Io`] when
    /// unreadable, [`ConfigError::Syntax`] for YAML/type/unknown-field errors,
    /// [`ConfigError::Invalid`] for values that fail validation; all carry the
    /// file and line.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { file: path.to_path_buf(), source })?;
        let mut cfg = Self::parse(&text, path)?;
        cfg.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if cfg.base_dir.as_os_str().is_empty() {
            cfg.base_dir = PathBuf::from(".");
        }
        cfg.twilio.resolve_env();
        cfg.livekit.resolve_env();
        cfg.context_key = Some(context_key_from_env());
        cfg.validate(&text, path)?;
        if let Some(reg) = &mut cfg.sip.registrar {
            for (i, u) in reg.users.iter_mut().enumerate() {
                match std::env::var(&u.password_env) {
                    Ok(v) if !v.is_empty() => u.password = Some(v),
                    _ => {
                        return Err(ConfigError::Invalid {
                            file: path.to_path_buf(),
                            line: find_line(&text, &u.password_env),
                            field: format!("sip.registrar.users[{i}].password_env"),
                            message: format!(
                                "environment variable `{}` (the SIP password of `{}`) is not set",
                                u.password_env, u.user
                            ),
                        });
                    }
                }
            }
        }
        for (name, trunk) in &mut cfg.trunks {
            if let Err(message) = trunk.resolve_env() {
                let needle = trunk.password_env.clone().unwrap_or_default();
                return Err(ConfigError::Invalid {
                    file: path.to_path_buf(),
                    line: find_line(&text, &needle),
                    field: format!("trunks.{name}.password_env"),
                    message,
                });
            }
        }
        if let Err((field, needle, message)) = cfg.http.resolve_env() {
            return Err(ConfigError::Invalid { file: path.to_path_buf(), line: find_line(&text, &needle), field, message });
        }
        for (name, app) in &mut cfg.applications {
            if let AppConfig::SupervisorDialIn { pin_env, pin } = app {
                match std::env::var(pin_env.as_str()) {
                    Ok(v) if !v.is_empty() && v.len() <= 16 && v.chars().all(|c| c.is_ascii_digit()) => *pin = Some(v),
                    _ => {
                        return Err(ConfigError::Invalid {
                            file: path.to_path_buf(),
                            line: find_line(&text, pin_env),
                            field: format!("applications.{name}.pin_env"),
                            message: format!("environment variable `{pin_env}` must hold the supervisors' PIN (1–16 digits)"),
                        });
                    }
                }
            }
        }
        cfg.contact_center = cfg.load_contact_center(&text, path)?.map(Arc::new);
        Ok(cfg)
    }

    /// Parses YAML text without validating references (used by [`Config::load`]).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let (line, column) = inner
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            // serde_yaml_ng's text repeats the location ("… at line L column
            // C") and starts with the path of the value it was in ("rtp: …"):
            // both are said once, in front.
            let mut text = inner.to_string();
            if let Some(stripped) = text.strip_suffix(&format!(" at line {line} column {column}")) {
                text = stripped.to_string();
            }
            if let Some((head, rest)) = text.split_once(": ")
                && !head.is_empty()
                && !head.contains(' ')
                && field.starts_with(head)
            {
                text = rest.to_string();
            }
            let message = if field.is_empty() || field == "." { text } else { format!("{field}: {text}") };
            ConfigError::Syntax { file: path.to_path_buf(), line, column, message }
        })
    }

    /// Checks cross-references and value ranges. `text` is the YAML source,
    /// used only to find the line of an offending field.
    pub fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &str, needle: &str, message: String| ConfigError::Invalid {
            file: path.to_path_buf(),
            line: find_line(text, needle),
            field: field.to_string(),
            message,
        };
        let known = |name: &str| self.applications.contains_key(name);
        let mut agents = None;
        for (name, app) in &self.applications {
            match app {
                AppConfig::Echo {} => {}
                AppConfig::SupervisorDialIn { pin_env, .. } => {
                    if !is_env_var_name(pin_env) {
                        return Err(invalid(
                            &format!("applications.{name}.pin_env"),
                            pin_env,
                            format!("`{pin_env}` is not an environment variable name (the PIN itself never goes in the file)"),
                        ));
                    }
                }
                AppConfig::VoiceAgent { agent, fallback_prompt, turn, amd, .. } => {
                    if let Some(amd) = amd {
                        Self::validate_amd(name, amd, &invalid)?;
                    }
                    if agents.is_none() {
                        agents = Some(self.load_agent_graph(text, path)?);
                    }
                    if !agents.as_ref().is_some_and(|g| g.contains(agent)) {
                        return Err(invalid(
                            &format!("applications.{name}.agent"),
                            agent,
                            format!("no agent named `{agent}` in {}", self.resolve(&self.agents_dir).display()),
                        ));
                    }
                    if let Some(p) = fallback_prompt {
                        self.check_wav(p).map_err(|m| {
                            invalid(&format!("applications.{name}.fallback_prompt"), &p.to_string_lossy(), m)
                        })?;
                    }
                    if !(0.0..=1.0).contains(&turn.start_threshold) || turn.stop_threshold > turn.start_threshold {
                        return Err(invalid(
                            &format!("applications.{name}.turn"),
                            "start_threshold",
                            "need 0 <= stop_threshold <= start_threshold <= 1".into(),
                        ));
                    }
                }
                AppConfig::Greeting { prompt, .. } => {
                    self.check_wav(prompt).map_err(|m| {
                        invalid(&format!("applications.{name}.prompt"), &prompt.to_string_lossy(), m)
                    })?;
                }
                AppConfig::DtmfMenu { prompt, options, .. } => {
                    self.check_wav(prompt).map_err(|m| {
                        invalid(&format!("applications.{name}.prompt"), &prompt.to_string_lossy(), m)
                    })?;
                    for (digits, target) in options {
                        if digits.is_empty() || !digits.chars().all(|c| "0123456789*#".contains(c)) {
                            return Err(invalid(
                                &format!("applications.{name}.options"),
                                digits,
                                format!("`{digits}` is not a DTMF digit string (0-9, *, #)"),
                            ));
                        }
                        if !known(target) || target == name {
                            return Err(invalid(
                                &format!("applications.{name}.options.{digits}"),
                                target,
                                format!("unknown application `{target}`"),
                            ));
                        }
                    }
                }
            }
        }
        if let Some(d) = &self.routes.default
            && !known(d) {
                return Err(invalid("routes.default", "default:", format!("unknown application `{d}`")));
            }
        for (did, app) in &self.routes.dids {
            if !known(app) {
                return Err(invalid(
                    &format!("routes.dids.{did}"),
                    did,
                    format!("unknown application `{app}`"),
                ));
            }
        }
        let codecs_ok = !self.rtp.codecs.is_empty()
            && self.rtp.codecs.iter().all(|c| matches!(c.to_ascii_uppercase().as_str(), "PCMU" | "PCMA"));
        if !codecs_ok {
            return Err(invalid("rtp.codecs", "codecs:", "supported codecs are PCMU and PCMA".into()));
        }
        if !(10..=60).contains(&self.rtp.ptime_ms) || !self.rtp.ptime_ms.is_multiple_of(10) {
            return Err(invalid("rtp.ptime_ms", "ptime_ms:", "must be 10, 20, 30, 40, 50 or 60".into()));
        }
        if self.sip.t1_ms == 0 || self.sip.t2_ms < self.sip.t1_ms {
            return Err(invalid("sip.t1_ms", "t1_ms:", "need 0 < T1 <= T2".into()));
        }
        self.validate_twilio(&invalid)?;
        self.validate_registrar(&invalid)?;
        self.validate_trunks(&invalid)?;
        self.validate_tokens(&invalid)
    }

    /// The `http.tokens` section: unique non-empty names, `token_env` an
    /// environment variable name, queues only for supervisors.
    fn validate_tokens(&self, invalid: &dyn Fn(&str, &str, String) -> ConfigError) -> Result<(), ConfigError> {
        for (i, t) in self.http.tokens.iter().enumerate() {
            let field = |f: &str| format!("http.tokens[{i}].{f}");
            if t.name.trim().is_empty() {
                return Err(invalid(&field("name"), "name:", "a token needs a name (shown in audit events)".into()));
            }
            if self.http.tokens[..i].iter().any(|o| o.name == t.name) {
                return Err(invalid(&field("name"), &t.name, format!("two tokens are named `{}`", t.name)));
            }
            if !is_env_var_name(&t.token_env) {
                return Err(invalid(
                    &field("token_env"),
                    &t.token_env,
                    format!(
                        "`{}` is not an environment variable name (the token itself never goes in the file)",
                        t.token_env
                    ),
                ));
            }
            if !t.queues.is_empty() && t.role != Role::Supervisor {
                return Err(invalid(
                    &field("queues"),
                    "queues:",
                    format!("only a supervisor's token is limited to queues (`{}` is {})", t.name, t.role),
                ));
            }
        }
        Ok(())
    }

    /// `sip.registrar`: a plain realm, unique SIP user names, password
    /// variable names (never passwords), 0 < min <= default <= max expiry.
    fn validate_registrar(&self, invalid: &dyn Fn(&str, &str, String) -> ConfigError) -> Result<(), ConfigError> {
        let Some(reg) = &self.sip.registrar else { return Ok(()) };
        if reg.realm.is_empty() || reg.realm.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
            return Err(invalid("sip.registrar.realm", "realm:", "must be non-empty, without quotes or backslashes".into()));
        }
        if reg.users.is_empty() {
            return Err(invalid("sip.registrar.users", "users:", "list at least one user".into()));
        }
        for (i, u) in reg.users.iter().enumerate() {
            let field = |f: &str| format!("sip.registrar.users[{i}].{f}");
            let user_ok = !u.user.is_empty()
                && u.user.len() <= 64
                && u.user.chars().all(|c| c.is_ascii_alphanumeric() || "+-_.!~*'()&=$,?/".contains(c));
            if !user_ok {
                return Err(invalid(&field("user"), &format!("user: {}", u.user), format!("`{}` is not a SIP user name", u.user)));
            }
            if reg.users.iter().take(i).any(|o| o.user == u.user) {
                return Err(invalid(&field("user"), &format!("user: {}", u.user), format!("user `{}` is listed twice", u.user)));
            }
            let var = &u.password_env;
            if !is_env_var_name(var) {
                return Err(invalid(
                    &field("password_env"),
                    var,
                    format!("`{var}` is not an environment variable name (the password itself never goes in the file)"),
                ));
            }
        }
        let known = |a: &String| a.eq_ignore_ascii_case("MD5") || a.eq_ignore_ascii_case("SHA-256");
        let distinct = reg.algorithms.iter().enumerate().all(|(i, a)| !reg.algorithms.iter().take(i).any(|b| b.eq_ignore_ascii_case(a)));
        if reg.algorithms.is_empty() || !reg.algorithms.iter().all(known) || !distinct {
            return Err(invalid(
                "sip.registrar.algorithms",
                "algorithms:",
                "list MD5 and/or SHA-256, each once, in preference order".into(),
            ));
        }
        let (min, def, max) = (reg.min_expires_s, reg.default_expires_s, reg.max_expires_s);
        if min == 0 || def < min || max < def {
            return Err(invalid(
                "sip.registrar.min_expires_s",
                "expires_s",
                "need 0 < min_expires_s <= default_expires_s <= max_expires_s".into(),
            ));
        }
        Ok(())
    }

    /// An application's `amd:` section: thresholds in range, and a message
    /// to leave when it leaves one.
    fn validate_amd(
        app: &str,
        amd: &crate::pipeline::amd::AmdConfig,
        invalid: &dyn Fn(&str, &str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        use crate::pipeline::amd::OnMachine;
        let field = |f: &str| format!("applications.{app}.amd.{f}");
        if !(0.0..=1.0).contains(&amd.speech_threshold) || !(0.0..=amd.speech_threshold).contains(&amd.silence_threshold)
        {
            return Err(invalid(
                &field("speech_threshold"),
                "speech_threshold",
                "need 0 <= silence_threshold <= speech_threshold <= 1".into(),
            ));
        }
        if amd.greeting_ms == 0 || amd.total_analysis_ms == 0 || amd.after_greeting_silence_ms == 0 {
            return Err(invalid(
                &field("greeting_ms"),
                "amd:",
                "greeting_ms, after_greeting_silence_ms and total_analysis_ms must be above 0".into(),
            ));
        }
        if amd.beep.min_freq_hz <= 0.0 || amd.beep.max_freq_hz <= amd.beep.min_freq_hz || amd.beep.max_freq_hz > 7900.0 {
            return Err(invalid(&field("beep"), "beep:", "need 0 < min_freq_hz < max_freq_hz <= 7900".into()));
        }
        if amd.on_machine == OnMachine::LeaveMessage && amd.message.trim().is_empty() {
            return Err(invalid(
                &field("message"),
                "on_machine",
                "on_machine: leave-message needs a `message` to speak after the beep".into(),
            ));
        }
        Ok(())
    }

    /// The `trunks:` section: a `sip:HOST[:PORT]` URI, a caller ID that is
    /// a number or a SIP user, a password variable with a username, a ring
    /// timeout.
    fn validate_trunks(&self, invalid: &dyn Fn(&str, &str, String) -> ConfigError) -> Result<(), ConfigError> {
        for (name, t) in &self.trunks {
            let field = |f: &str| format!("trunks.{name}.{f}");
            if t.host_port().is_none() {
                return Err(invalid(&field("uri"), &t.uri, format!("`{}` is not sip:HOST[:PORT]", t.uri)));
            }
            if let Some(id) = &t.caller_id {
                let user_ok = !id.is_empty()
                    && id.chars().all(|c| c.is_ascii_alphanumeric() || "+-_.!~*'()&=$,;?/".contains(c));
                if !user_ok {
                    return Err(invalid(&field("caller_id"), id, format!("`{id}` is not a phone number or SIP user")));
                }
            }
            if t.username.is_some() != t.password_env.is_some() {
                return Err(invalid(
                    &field("password_env"),
                    &format!("{name}:"),
                    "username and password_env go together (password_env names the variable holding the password)"
                        .into(),
                ));
            }
            if let Some(var) = &t.password_env
                && !is_env_var_name(var)
            {
                return Err(invalid(
                    &field("password_env"),
                    var,
                    format!("`{var}` is not an environment variable name (the password itself never goes in the file)"),
                ));
            }
            if t.ring_timeout_s == 0 || t.ring_timeout_s > 600 {
                return Err(invalid(&field("ring_timeout_s"), "ring_timeout_s", "must be 1 to 600".into()));
            }
        }
        Ok(())
    }

    /// The `twilio:` section: `public_url` is an http(s) URL, each
    /// `dial_sip` target a `sip:`/`sips:` URI.
    fn validate_twilio(&self, invalid: &dyn Fn(&str, &str, String) -> ConfigError) -> Result<(), ConfigError> {
        if let Some(url) = &self.twilio.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                "twilio.public_url",
                "public_url:",
                format!("`{url}` must start with http:// or https://"),
            ));
        }
        for (did, uri) in &self.twilio.dial_sip {
            let lower = uri.to_ascii_lowercase();
            if !(lower.starts_with("sip:") || lower.starts_with("sips:")) {
                return Err(invalid(
                    &format!("twilio.dial_sip.{did}"),
                    uri,
                    format!("`{uri}` is not a sip: or sips: URI"),
                ));
            }
        }
        Ok(())
    }

    /// Agents the voice-agent applications start with (the graph's entries).
    pub fn entry_agents(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .applications
            .values()
            .filter_map(|a| match a {
                AppConfig::VoiceAgent { agent, .. } => Some(agent.clone()),
                _ => None,
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Loads the agent graph of `agents_dir` with the applications' agents
    /// as entries. An application naming no agent is reported at its line
    /// in the config; other errors name the agent file and line.
    pub fn load_agent_graph(&self, text: &str, path: &Path) -> Result<crate::agent::graph::AgentGraph, ConfigError> {
        let dir = self.resolve(&self.agents_dir);
        let entries = self.entry_agents();
        crate::agent::graph::load_graph(&dir, &entries).map_err(|e| {
            let missing = entries.iter().find(|a| e.line == 0 && e.message.contains(&format!("entry agent `{a}`")));
            match missing {
                Some(a) => ConfigError::Invalid {
                    file: path.to_path_buf(),
                    line: find_line(text, &format!("agent: {a}")),
                    field: "applications.*.agent".into(),
                    message: format!("no agent named `{a}` in {}", dir.display()),
                },
                None => ConfigError::Agent(e),
            }
        })
    }

    /// Loads `queues_file` (when set): its AI members must be agents of
    /// `agents_dir`, its SIP users registrar users (when a registrar is
    /// configured). Errors name the queues file and line.
    pub fn load_contact_center(
        &self,
        text: &str,
        path: &Path,
    ) -> Result<Option<crate::contact_center::config::ContactCenterConfig>, ConfigError> {
        let Some(file) = &self.queues_file else { return Ok(None) };
        let graph = self.load_agent_graph(text, path)?;
        let mut ai: Vec<String> = graph.flow_agents().keys().chain(graph.llm_agents().keys()).cloned().collect();
        ai.sort();
        let users: Option<Vec<String>> =
            self.sip.registrar.as_ref().map(|r| r.users.iter().map(|u| u.user.clone()).collect());
        Ok(Some(crate::contact_center::config::load(&self.resolve(file), &ai, users.as_deref())?))
    }

    /// Resolves a path from the config against the config directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.base_dir.join(p) }
    }

    /// The database URL: the configured one, or a SQLite file in `data_dir`.
    pub fn database_url(&self) -> String {
        self.store.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}?mode=rwc", self.data_dir.join("skald.db").display())
        })
    }

    /// The local models directory: `models_dir`, else the default.
    pub fn models_dir(&self) -> PathBuf {
        match &self.models_dir {
            Some(d) => self.resolve(d),
            None => crate::providers::local::models::ModelPaths::default_dir(),
        }
    }

    /// True when some application needs the local voice models.
    pub fn needs_voice(&self) -> bool {
        self.applications.values().any(|a| matches!(a, AppConfig::VoiceAgent { .. }))
    }

    /// Whether a voice agent needs the local STT model (it has no STT of
    /// its own, or a cloud one the local model backs up); `false` when every
    /// voice agent uses a stand-in, and the model is not loaded.
    pub fn needs_local_stt(&self) -> bool {
        self.applications.values().any(|a| match a {
            AppConfig::VoiceAgent { stt, .. } => !matches!(stt.as_deref(), Some(SttChoice::Fixed(_))),
            _ => false,
        })
    }

    /// Whether a voice agent needs the local voice (as
    /// [`Config::needs_local_stt`]).
    pub fn needs_local_tts(&self) -> bool {
        self.applications.values().any(|a| match a {
            AppConfig::VoiceAgent { tts, .. } => !matches!(tts.as_deref(), Some(TtsChoice::Tone(_) | TtsChoice::Wav(_))),
            _ => false,
        })
    }

    /// The answering-machine detection of application `app` on outbound
    /// calls, when it is a voice agent with `amd.enabled`.
    pub fn amd_for(&self, app: &str) -> Option<&crate::pipeline::amd::AmdConfig> {
        match self.applications.get(app) {
            Some(AppConfig::VoiceAgent { amd: Some(a), .. }) if a.enabled => Some(a),
            _ => None,
        }
    }

    /// The SIP timers as durations: (T1, T2, T4).
    pub fn sip_timers(&self) -> (Duration, Duration, Duration) {
        (
            Duration::from_millis(self.sip.t1_ms),
            Duration::from_millis(self.sip.t2_ms),
            Duration::from_millis(self.sip.t4_ms),
        )
    }

    /// Application name for a called number: exact DID match, then the same
    /// number with/without a leading `+`, then the default. `None` → 404.
    pub fn route(&self, did: &str) -> Option<&str> {
        let alt = match did.strip_prefix('+') {
            Some(rest) => rest.to_string(),
            None => format!("+{did}"),
        };
        self.routes
            .dids
            .get(did)
            .or_else(|| self.routes.dids.get(&alt))
            .or(self.routes.default.as_ref())
            .map(String::as_str)
    }

    fn check_wav(&self, p: &Path) -> Result<(), String> {
        let full = self.resolve(p);
        hound::WavReader::open(&full)
            .map(|_| ())
            .map_err(|e| format!("cannot open WAV `{}`: {e}", full.display()))
    }
}

/// `SKALD_CONTEXT_KEY`, or a random key for this process only (logged: call
/// contexts signed by other instances will not verify).
fn context_key_from_env() -> String {
    match std::env::var("SKALD_CONTEXT_KEY") {
        Ok(k) if !k.is_empty() => k,
        _ => {
            tracing::warn!(
                "SKALD_CONTEXT_KEY is not set: call contexts are signed with a random per-process key \
                 and contexts from other instances (or from before a restart) will not be trusted"
            );
            hex::encode(rand::random::<[u8; 32]>())
        }
    }
}

/// 1-based line of the first line containing `needle` (0 when absent):
/// where a YAML error points when serde cannot say.
pub(crate) fn find_line(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<Config, ConfigError> {
        let p = Path::new("test.yaml");
        let c = Config::parse(y, p)?;
        c.validate(y, p)?;
        Ok(c)
    }

    #[test]
    fn unknown_field_names_line() {
        let err = parse("sip:\n  t1_ms: 500\n  lisen: 1.2.3.4:5060\n").unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("test.yaml:3:"), "{s}");
        assert!(s.contains("lisen"), "{s}");
    }

    #[test]
    fn wrong_type_names_line_and_field() {
        let err = parse("rtp:\n  ptime_ms: twenty\n").unwrap_err().to_string();
        // The field and the place once each.
        assert_eq!(err, "test.yaml:2:13: rtp.ptime_ms: invalid type: string \"twenty\", expected u32");
    }

    #[test]
    fn unknown_app_in_route_is_invalid() {
        let y = "routes:\n  default: echo\n  dids:\n    \"+15550100\": ech\napplications:\n  echo: {type: echo}\n";
        let err = parse(y).unwrap_err().to_string();
        assert_eq!(err, "test.yaml:4: routes.dids.+15550100: unknown application `ech`");
    }

    #[test]
    fn trusted_proxies_take_addresses_and_networks() {
        let c = parse("http:\n  trusted_proxies: [10.0.0.0/8, 192.0.2.1, \"2001:db8::/32\"]\n").unwrap();
        let nets: Vec<String> = c.http.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]);
        let err = parse("http:\n  listen: 127.0.0.1:8080\n  trusted_proxies: [10.0.0.0/8, proxy.local]\n").unwrap_err().to_string();
        assert_eq!(err, "test.yaml:3:20: http.trusted_proxies[1]: `proxy.local` is neither an IP address nor a CIDR network");
    }

    #[test]
    fn bad_port_range() {
        let err = parse("rtp:\n  ports: 3000-2000\n").unwrap_err().to_string();
        assert!(err.starts_with("test.yaml:2:"), "{err}");
    }

    #[test]
    fn twilio_section_is_validated() {
        let ok = "twilio:\n  public_url: https://voice.example.com\n  dial_sip:\n    \"+15550199\": sips:agent@sip.example.com\n";
        let c = parse(ok).unwrap();
        assert_eq!(c.twilio.dial_sip["+15550199"], "sips:agent@sip.example.com");
        let bad_uri = "twilio:\n  dial_sip:\n    \"+15550199\": agent@sip.example.com\n";
        assert_eq!(
            parse(bad_uri).unwrap_err().to_string(),
            "test.yaml:3: twilio.dial_sip.+15550199: `agent@sip.example.com` is not a sip: or sips: URI"
        );
        let bad_url = "http:\n  listen: 127.0.0.1:8080\ntwilio:\n  public_url: voice.example.com\n";
        assert_eq!(
            parse(bad_url).unwrap_err().to_string(),
            "test.yaml:4: twilio.public_url: `voice.example.com` must start with http:// or https://"
        );
    }

    #[test]
    fn debug_hides_the_context_key() {
        let c = Config { context_key: Some("very-secret-key".into()), ..Config::default() };
        let text = format!("{c:?}");
        assert!(!text.contains("very-secret-key"), "{text}");
        assert!(text.contains("context_key: Some(\"<set>\")"), "{text}");
    }

    const TRUNK: &str = "trunks:\n  carrier:\n    uri: sip:127.0.0.1:5080\n    username: alice\n    password_env: SKALD_TEST_TRUNK_PW\n    caller_id: \"+15550123\"\n";

    #[test]
    fn trunk_defaults_and_request_uri() {
        let c = parse(TRUNK).unwrap();
        let t = &c.trunks["carrier"];
        assert_eq!(t.ring_timeout_s, 30);
        assert_eq!(t.transport, TrunkTransport::Udp);
        assert_eq!(t.request_uri("+15551234").unwrap(), "sip:+15551234@127.0.0.1:5080");
        let tcp = parse("trunks:\n  t:\n    uri: sip:pbx.example.com\n    transport: tcp\n").unwrap();
        assert_eq!(tcp.trunks["t"].request_uri("100").unwrap(), "sip:100@pbx.example.com;transport=tcp");
        assert!(is_dialable_number("+15551234") && is_dialable_number("*72") && !is_dialable_number("+1 555") && !is_dialable_number("+"));
    }

    #[test]
    fn trunk_errors_name_line_and_field() {
        let bad_uri = "trunks:\n  carrier:\n    uri: http://x\n";
        assert_eq!(parse(bad_uri).unwrap_err().to_string(), "test.yaml:3: trunks.carrier.uri: `http://x` is not sip:HOST[:PORT]");
        let user_only = "trunks:\n  carrier:\n    uri: sip:h\n    username: alice\n";
        let e = parse(user_only).unwrap_err().to_string();
        assert!(e.starts_with("test.yaml:2: trunks.carrier.password_env: username and password_env go together"), "{e}");
        let pw_in_file = "trunks:\n  carrier:\n    uri: sip:h\n    username: alice\n    password_env: s3cr3t!pw\n";
        let e = parse(pw_in_file).unwrap_err().to_string();
        assert!(e.starts_with("test.yaml:5: trunks.carrier.password_env: `s3cr3t!pw` is not an environment variable name"), "{e}");
        let bad_id = "trunks:\n  carrier:\n    uri: sip:h\n    caller_id: \"+1 555\"\n";
        assert!(parse(bad_id).unwrap_err().to_string().starts_with("test.yaml:4: trunks.carrier.caller_id:"));
        let bad_timeout = "trunks:\n  carrier:\n    uri: sip:h\n    ring_timeout_s: 0\n";
        assert!(parse(bad_timeout).unwrap_err().to_string().starts_with("test.yaml:4: trunks.carrier.ring_timeout_s:"));
        let unknown = "trunks:\n  carrier:\n    uri: sip:h\n    password: x\n";
        assert!(parse(unknown).unwrap_err().to_string().starts_with("test.yaml:4:"));
    }

    #[test]
    fn trunk_password_comes_from_the_environment_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("skald.yaml");
        let yaml = TRUNK.replace("SKALD_TEST_TRUNK_PW", "SKALD_TEST_TRUNK_PW_UNSET_XYZ");
        std::fs::write(&file, &yaml).unwrap();
        let e = Config::load(&file).unwrap_err().to_string();
        assert!(e.ends_with(":5: trunks.carrier.password_env: environment variable `SKALD_TEST_TRUNK_PW_UNSET_XYZ` (the trunk password) is not set"), "{e}");
        // SAFETY: set_var is unsafe in edition 2024 (another thread may read the
        // environment); no other test reads this variable.
        unsafe { std::env::set_var("SKALD_TEST_TRUNK_PW_SET", "hunter2") };
        std::fs::write(&file, TRUNK.replace("SKALD_TEST_TRUNK_PW", "SKALD_TEST_TRUNK_PW_SET")).unwrap();
        let c = Config::load(&file).unwrap();
        assert_eq!(c.trunks["carrier"].password.as_deref(), Some("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn queues_file_loads_and_a_bad_one_names_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let agents = format!("{}/sip-config/agents", env!("CARGO_MANIFEST_DIR"));
        let file = dir.path().join("skald.yaml");
        std::fs::write(
            &file,
            format!(
                "agents_dir: {agents}\nqueues_file: queues.yaml\nroutes: {{default: fd}}\napplications:\n  \
                 support: {{type: voice-agent, agent: tier1-llm}}\n  fd: {{type: voice-agent, agent: dental-front-desk}}\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("queues.yaml"), "agents:\n  - id: carol\n    uri: sip:carol@192.0.2.1\nqueues:\n  front:\n    members: [carol, nobody]\n").unwrap();
        let e = Config::load(&file).unwrap_err().to_string();
        assert!(e.contains("queues.yaml:6:") && e.contains("nobody"), "{e}");
        std::fs::write(dir.path().join("queues.yaml"), "agents:\n  - id: carol\n    uri: sip:carol@192.0.2.1\nqueues:\n  front:\n    members: [carol, {ai: tier2-billing}]\n").unwrap();
        let c = Config::load(&file).unwrap();
        let cc = c.contact_center.as_ref().unwrap();
        assert_eq!(cc.queues.len(), 1);
        assert_eq!(cc.agents[0].profile.id.to_string(), "carol");
    }

    #[test]
    fn amd_section_of_a_voice_agent() {
        let agents = format!("{}/sip-config/agents", env!("CARGO_MANIFEST_DIR"));
        // Every agent file must be reachable: the LLM agents get an app too.
        let base = format!("agents_dir: {agents}\napplications:\n  echo: {{type: echo}}\n  support: {{type: voice-agent, agent: tier1-llm}}\n  out:\n    type: voice-agent\n    agent: dental-front-desk\n");
        let c = parse(&format!("{base}    amd:\n      message: Please call us back.\n      greeting_ms: 2000\n")).unwrap();
        let amd = c.amd_for("out").unwrap();
        assert_eq!((amd.greeting_ms, amd.initial_silence_ms), (2000, 2500));
        assert!(c.amd_for("echo").is_none());
        let off = parse(&format!("{base}    amd:\n      enabled: false\n      on_machine: hangup\n")).unwrap();
        assert!(off.amd_for("out").is_none());
        let e = parse(&format!("{base}    amd:\n      on_machine: leave-message\n")).unwrap_err().to_string();
        assert!(e.starts_with("test.yaml:9: applications.out.amd.message:"), "{e}");
        let e = parse(&format!("{base}    amd:\n      on_machine: hangup\n      speech_threshold: 1.5\n")).unwrap_err().to_string();
        assert!(e.starts_with("test.yaml:10: applications.out.amd.speech_threshold:"), "{e}");
        let e = parse(&format!("{base}    amd:\n      on_machine: hangup\n      greting_ms: 5\n")).unwrap_err().to_string();
        // Fields inside a `type:`-tagged application are buffered by serde, so
        // a typo there points at the applications map, not its own line.
        assert!(e.starts_with("test.yaml:") && e.contains("unknown field `greting_ms`"), "{e}");
    }

    const REGISTRAR: &str = "sip:\n  registrar:\n    realm: skald\n    users:\n      - user: alice\n        password_env: SKALD_TEST_SIP_ALICE\n";

    #[test]
    fn registrar_section_defaults_and_errors() {
        let c = parse(REGISTRAR).unwrap();
        let reg = c.sip.registrar.as_ref().unwrap();
        assert_eq!((reg.default_expires_s, reg.min_expires_s, reg.max_expires_s), (3600, 60, 7200));
        assert_eq!(reg.users[0].user, "alice");
        assert!(parse("sip:\n  t1_ms: 500\n").unwrap().sip.registrar.is_none());
        let e = parse(&REGISTRAR.replace("SKALD_TEST_SIP_ALICE", "pass word")).unwrap_err().to_string();
        assert!(e.starts_with("test.yaml:6: sip.registrar.users[0].password_env: `pass word` is not an environment"), "{e}");
        let e = parse(&REGISTRAR.replace("user: alice", "user: a<b")).unwrap_err().to_string();
        assert!(e.starts_with("test.yaml:5: sip.registrar.users[0].user:"), "{e}");
        let e = parse(&format!("{REGISTRAR}    min_expires_s: 0\n")).unwrap_err().to_string();
        assert!(e.starts_with("test.yaml:7: sip.registrar.min_expires_s:"), "{e}");
        let e = parse(&REGISTRAR.replace("realm: skald", "realm: \"a\\\"b\"")).unwrap_err().to_string();
        assert!(e.starts_with("test.yaml:3: sip.registrar.realm:"), "{e}");
        let e = parse(&format!("{REGISTRAR}    algorithms: [MD5, SHA-512]\n")).unwrap_err().to_string();
        assert!(e.starts_with("test.yaml:7: sip.registrar.algorithms:"), "{e}");
        assert_eq!(reg.algorithms, ["MD5", "SHA-256"]);
        let e = parse(&format!("{REGISTRAR}    password: x\n")).unwrap_err().to_string();
        assert!(e.starts_with("test.yaml:7:"), "{e}");
    }

    #[test]
    fn registrar_passwords_come_from_the_environment_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("skald.yaml");
        std::fs::write(&file, REGISTRAR.replace("SKALD_TEST_SIP_ALICE", "SKALD_TEST_SIP_ALICE_UNSET_XYZ")).unwrap();
        let e = Config::load(&file).unwrap_err().to_string();
        assert!(
            e.ends_with(":6: sip.registrar.users[0].password_env: environment variable `SKALD_TEST_SIP_ALICE_UNSET_XYZ` (the SIP password of `alice`) is not set"),
            "{e}"
        );
        // SAFETY: set_var is unsafe in edition 2024 (another thread may read the
        // environment); no other test reads this variable.
        unsafe { std::env::set_var("SKALD_TEST_SIP_ALICE_SET", "s3cret-pw") };
        std::fs::write(&file, REGISTRAR.replace("SKALD_TEST_SIP_ALICE", "SKALD_TEST_SIP_ALICE_SET")).unwrap();
        let c = Config::load(&file).unwrap();
        assert_eq!(c.sip.registrar.as_ref().unwrap().users[0].password.as_deref(), Some("s3cret-pw"));
        assert!(!format!("{c:?}").contains("s3cret-pw"));
    }

    #[test]
    fn api_tokens_are_validated_with_their_line() {
        let ok = "http:\n  tokens:\n    - name: ana\n      role: supervisor\n      token_env: ANA_TOKEN\n      queues: [billing]\n    - {name: vic, role: viewer, token_env: VIC_TOKEN}\n";
        let c = parse(ok).unwrap();
        assert_eq!(c.http.tokens.len(), 2);
        assert_eq!((c.http.tokens[0].role, c.http.tokens[0].queues.as_slice()), (Role::Supervisor, &["billing".to_string()][..]));
        let e = parse(&ok.replace("role: supervisor", "role: boss")).unwrap_err().to_string();
        assert!(e.starts_with("test.yaml:4:") && e.contains("unknown variant `boss`"), "{e}");
        let e = parse(&ok.replace("token_env: ANA_TOKEN", "token_env: s3cr3t-value")).unwrap_err().to_string();
        assert!(e.starts_with("test.yaml:5: http.tokens[0].token_env:"), "{e}");
        let e = parse(&ok.replace("name: vic", "name: ana")).unwrap_err().to_string();
        assert!(e.starts_with("test.yaml:") && e.contains("http.tokens[1].name: two tokens are named `ana`"), "{e}");
        let e = parse(&ok.replace("VIC_TOKEN}", "VIC_TOKEN, queues: [x]}")).unwrap_err().to_string();
        assert!(e.contains("http.tokens[1].queues: only a supervisor's token"), "{e}");
        let e = parse(&ok.replace("      token_env: ANA_TOKEN\n", "")).unwrap_err().to_string();
        assert!(e.starts_with("test.yaml:") && e.contains("token_env"), "{e}");
    }

    #[test]
    fn api_tokens_come_from_the_environment_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("skald.yaml");
        let yaml = "http:\n  tokens:\n    - name: ana\n      role: admin\n      token_env: SKALD_TEST_API_TOKEN_UNSET_XYZ\n";
        std::fs::write(&file, yaml).unwrap();
        let e = Config::load(&file).unwrap_err().to_string();
        assert!(e.ends_with(":5: http.tokens[0].token_env: environment variable `SKALD_TEST_API_TOKEN_UNSET_XYZ` (the token of `ana`) is not set"), "{e}");
        // SAFETY: set_var is unsafe in edition 2024 (another thread may read the
        // environment); no other test reads these variables.
        unsafe {
            std::env::set_var("SKALD_TEST_API_TOKEN_A", "same-secret");
            std::env::set_var("SKALD_TEST_API_TOKEN_B", "same-secret");
        }
        std::fs::write(&file, yaml.replace("SKALD_TEST_API_TOKEN_UNSET_XYZ", "SKALD_TEST_API_TOKEN_A")).unwrap();
        let c = Config::load(&file).unwrap();
        assert_eq!(c.http.tokens[0].token.as_deref(), Some("same-secret"));
        assert!(!format!("{c:?}").contains("same-secret"));
        let two = format!("{}    - {{name: bo, role: viewer, token_env: SKALD_TEST_API_TOKEN_B}}\n", yaml.replace("SKALD_TEST_API_TOKEN_UNSET_XYZ", "SKALD_TEST_API_TOKEN_A"));
        std::fs::write(&file, two).unwrap();
        let e = Config::load(&file).unwrap_err().to_string();
        assert!(e.ends_with(":6: http.tokens[1].token_env: the token in `SKALD_TEST_API_TOKEN_B` is the same as the one in `SKALD_TEST_API_TOKEN_A`; each holder needs its own"), "{e}");
    }

    #[test]
    fn routes_with_and_without_plus() {
        let y = "routes:\n  default: null\n  dids:\n    \"+15550100\": echo\napplications:\n  echo: {type: echo}\n";
        let c = parse(y).unwrap();
        assert_eq!(c.route("+15550100"), Some("echo"));
        assert_eq!(c.route("15550100"), Some("echo"));
        assert_eq!(c.route("999"), None);
    }
}
