//! One LiveKit project as skald uses it: tokens and the Twirp services.
//!
//! Every request is signed with a short-lived token made from the API key
//! and secret (the `livekit-api` crate does this per request). Errors name
//! the URL and LiveKit's reason (`unauthenticated`, `not_found`, …), never
//! the secret.

use livekit_api::access_token::{AccessToken, SIPGrants, TokenVerifier, VideoGrants};
use livekit_api::services::ServiceError;
use livekit_api::services::agent_dispatch::AgentDispatchClient;
use livekit_api::services::room::{CreateRoomOptions, RoomClient, UpdateParticipantOptions};
use livekit_api::services::sip::{
    CreateSIPDispatchRuleOptions, CreateSIPInboundTrunkOptions, CreateSIPParticipantOptions, ListSIPDispatchRuleFilter,
    ListSIPInboundTrunkFilter, SIPClient, TransferSIPParticipantOptions,
};
use crate::config::LiveKitConfig;
use livekit_protocol as proto;
use std::collections::HashMap;
use std::time::Duration;

/// Environment variable with the project's URL (`wss://…` or `https://…`).
pub const ENV_URL: &str = "LIVEKIT_URL";
/// Environment variable with the API key.
pub const ENV_KEY: &str = "LIVEKIT_API_KEY";
/// Environment variable with the API secret.
pub const ENV_SECRET: &str = "LIVEKIT_API_SECRET";
/// Name of the inbound trunk `skald livekit sip setup` creates.
pub const TRUNK_NAME: &str = "skald-inbound";
/// Name of the dispatch rule `skald livekit sip setup` creates.
pub const RULE_NAME: &str = "skald-dispatch";

/// Why a LiveKit request failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveKitError {
    /// A setting is missing (names the variable or field).
    #[error("LiveKit is not configured: {0}")]
    NotConfigured(String),
    /// The server refused or could not be reached.
    #[error("LiveKit at {url}: {reason}")]
    Server {
        /// The project URL.
        url: String,
        /// What went wrong (the Twirp code and message, or the transport error).
        reason: String,
    },
    /// A token could not be made or did not verify.
    #[error("LiveKit token: {0}")]
    Token(String),
}

/// What a token allows (the grants of LiveKit's access tokens).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenRequest {
    /// Participant identity (`sub`).
    pub identity: String,
    /// Display name.
    pub name: Option<String>,
    /// Room to join (`video.room`, with `roomJoin`).
    pub room: Option<String>,
    /// Grants by name: `join`, `admin`, `create`, `list`, `record`,
    /// `hidden`, `agent`, `sip-admin`, `sip-call`.
    pub grants: Vec<String>,
    /// Participant kind (`standard`, `sip`, `agent`).
    pub kind: Option<String>,
    /// Participant attributes.
    pub attributes: HashMap<String, String>,
    /// Lifetime.
    pub ttl: Duration,
}

/// One LiveKit project.
#[derive(Clone)]
pub struct LiveKit {
    /// The project URL as given.
    url: String,
    /// API key.
    key: String,
    /// API secret.
    secret: String,
}

impl std::fmt::Debug for LiveKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKit").field("url", &self.url).field("key", &self.key).finish_non_exhaustive()
    }
}

/// The outcome of [`LiveKit::sip_setup`].
#[derive(Debug, Clone, PartialEq)]
pub struct SipSetup {
    /// The inbound trunk's id.
    pub trunk_id: String,
    /// Whether the trunk was created now (else it existed).
    pub trunk_created: bool,
    /// The dispatch rule's id.
    pub rule_id: String,
    /// Whether the rule was created now (else it existed).
    pub rule_created: bool,
}

impl LiveKit {
    /// A project at `url` with API key `key` and secret `secret`.
    pub fn new(url: &str, key: &str, secret: &str) -> LiveKit {
        LiveKit { url: url.trim_end_matches('/').to_string(), key: key.to_string(), secret: secret.to_string() }
    }

    /// The project of the config's `livekit` section (its URL, key and
    /// secret resolved from the environment by
    /// [`LiveKitConfig::resolve_env`]). Errors:
    /// [`LiveKitError::NotConfigured`] naming what is missing.
    pub fn from_config(cfg: &LiveKitConfig) -> Result<LiveKit, LiveKitError> {
        let url = cfg
            .url
            .as_deref()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| LiveKitError::NotConfigured(format!("set {ENV_URL} (or livekit.url in the config)")))?;
        let key = cfg.api_key.as_deref().ok_or_else(|| LiveKitError::NotConfigured(format!("set {ENV_KEY}")))?;
        let secret = cfg.api_secret.as_deref().ok_or_else(|| LiveKitError::NotConfigured(format!("set {ENV_SECRET}")))?;
        Ok(LiveKit::new(url, key, secret))
    }

    /// The project URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// An access token (a JWT signed with the API secret, HS256) for
    /// `req`. Errors: an unknown grant name, a token that cannot be signed.
    pub fn token(&self, req: &TokenRequest) -> Result<String, LiveKitError> {
        let mut video = VideoGrants::default();
        let mut sip = SIPGrants::default();
        if let Some(room) = &req.room {
            video.room = room.clone();
            video.room_join = true;
        }
        for g in &req.grants {
            match g.as_str() {
                "join" => video.room_join = true,
                "admin" => video.room_admin = true,
                "create" => video.room_create = true,
                "list" => video.room_list = true,
                "record" => video.room_record = true,
                "hidden" => video.hidden = true,
                "agent" => video.agent = true,
                "sip-admin" => sip.admin = true,
                "sip-call" => sip.call = true,
                other => {
                    return Err(LiveKitError::Token(format!(
                        "unknown grant `{other}` (join, admin, create, list, record, hidden, agent, sip-admin, sip-call)"
                    )));
                }
            }
        }
        let mut t = AccessToken::with_api_key(&self.key, &self.secret)
            .with_identity(&req.identity)
            .with_ttl(req.ttl)
            .with_grants(video)
            .with_sip_grants(sip)
            .with_attributes(req.attributes.clone());
        if let Some(n) = &req.name {
            t = t.with_name(n);
        }
        if let Some(k) = &req.kind {
            t = t.with_kind(k);
        }
        t.to_jwt().map_err(|e| LiveKitError::Token(e.to_string()))
    }

    /// A verifier of tokens signed with this project's secret (webhooks).
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::with_api_key(&self.key, &self.secret)
    }

    fn err(&self, e: ServiceError) -> LiveKitError {
        LiveKitError::Server { url: self.url.clone(), reason: e.to_string() }
    }

    fn rooms_client(&self) -> RoomClient {
        RoomClient::with_api_key(&self.url, &self.key, &self.secret)
    }

    fn sip_client(&self) -> SIPClient {
        SIPClient::with_api_key(&self.url, &self.key, &self.secret)
    }

    /// Every room (RoomService `ListRooms`).
    pub async fn rooms(&self) -> Result<Vec<proto::Room>, LiveKitError> {
        self.rooms_client().list_rooms(Vec::new()).await.map_err(|e| self.err(e))
    }

    /// Creates room `name` (RoomService `CreateRoom`); an existing room is
    /// returned as it is.
    pub async fn create_room(&self, name: &str, empty_timeout_s: u32) -> Result<proto::Room, LiveKitError> {
        let opts = CreateRoomOptions { empty_timeout: empty_timeout_s, ..Default::default() };
        self.rooms_client().create_room(name, opts).await.map_err(|e| self.err(e))
    }

    /// Deletes room `name`; its participants are disconnected.
    pub async fn delete_room(&self, name: &str) -> Result<(), LiveKitError> {
        self.rooms_client().delete_room(name).await.map_err(|e| self.err(e))
    }

    /// The participants of room `room`.
    pub async fn participants(&self, room: &str) -> Result<Vec<proto::ParticipantInfo>, LiveKitError> {
        self.rooms_client().list_participants(room).await.map_err(|e| self.err(e))
    }

    /// Removes `identity` from `room`.
    pub async fn remove_participant(&self, room: &str, identity: &str) -> Result<(), LiveKitError> {
        self.rooms_client().remove_participant(room, identity).await.map_err(|e| self.err(e))
    }

    /// Sets attributes (merged; an empty value deletes one) and, when
    /// given, the metadata of `identity` in `room`.
    pub async fn update_participant(
        &self,
        room: &str,
        identity: &str,
        attributes: HashMap<String, String>,
        metadata: Option<String>,
    ) -> Result<proto::ParticipantInfo, LiveKitError> {
        let opts = UpdateParticipantOptions { attributes, metadata: metadata.unwrap_or_default(), ..Default::default() };
        self.rooms_client().update_participant(room, identity, opts).await.map_err(|e| self.err(e))
    }

    /// Makes sure calls to `numbers` reach skald's rooms: one inbound trunk
    /// named [`TRUNK_NAME`] for the numbers, and one dispatch rule named
    /// [`RULE_NAME`] that puts each caller in a room of their own named
    /// `room_prefix` + a suffix. Idempotent: what exists is kept (a trunk
    /// with other numbers is reported, not changed).
    pub async fn sip_setup(&self, numbers: &[String], room_prefix: &str) -> Result<SipSetup, LiveKitError> {
        let sip = self.sip_client();
        let trunks = sip.list_sip_inbound_trunk(ListSIPInboundTrunkFilter::All).await.map_err(|e| self.err(e))?;
        let (trunk_id, trunk_created) = match trunks.into_iter().find(|t| t.name == TRUNK_NAME) {
            Some(t) => {
                if !numbers.iter().all(|n| t.numbers.contains(n)) {
                    tracing::warn!(have = ?t.numbers, want = ?numbers, "the inbound trunk exists with other numbers: kept");
                }
                (t.sip_trunk_id, false)
            }
            None => {
                let t = sip
                    .create_sip_inbound_trunk(TRUNK_NAME.into(), numbers.to_vec(), CreateSIPInboundTrunkOptions::default())
                    .await
                    .map_err(|e| self.err(e))?;
                (t.sip_trunk_id, true)
            }
        };
        let rules = sip.list_sip_dispatch_rule(ListSIPDispatchRuleFilter::All).await.map_err(|e| self.err(e))?;
        let (rule_id, rule_created) = match rules.into_iter().find(|r| r.name == RULE_NAME) {
            Some(r) => (r.sip_dispatch_rule_id, false),
            None => {
                let rule = proto::sip_dispatch_rule::Rule::DispatchRuleIndividual(proto::SipDispatchRuleIndividual {
                    room_prefix: room_prefix.to_string(),
                    ..Default::default()
                });
                let opts =
                    CreateSIPDispatchRuleOptions { name: RULE_NAME.into(), trunk_ids: vec![trunk_id.clone()], ..Default::default() };
                let r = sip.create_sip_dispatch_rule(rule, opts).await.map_err(|e| self.err(e))?;
                (r.sip_dispatch_rule_id, true)
            }
        };
        Ok(SipSetup { trunk_id, trunk_created, rule_id, rule_created })
    }

    /// Dials `to` through outbound trunk `trunk_id` into `room` as
    /// participant `identity` (SIP `CreateSIPParticipant`), with `headers`
    /// on the INVITE (the call's context).
    pub async fn dial(
        &self,
        trunk_id: &str,
        to: &str,
        room: &str,
        identity: &str,
        headers: HashMap<String, String>,
    ) -> Result<proto::SipParticipantInfo, LiveKitError> {
        let opts = CreateSIPParticipantOptions {
            participant_identity: identity.to_string(),
            headers: Some(headers).filter(|h| !h.is_empty()),
            ..Default::default()
        };
        self.sip_client()
            .create_sip_participant(trunk_id.into(), to.into(), room.into(), opts, None)
            .await
            .map_err(|e| self.err(e))
    }

    /// Transfers SIP participant `identity` of `room` to `to` (a `sip:` or
    /// `tel:` URI; SIP `TransferSIPParticipant`): livekit-sip sends a REFER
    /// whose Refer-To carries `headers` (the call's context).
    pub async fn transfer(&self, room: &str, identity: &str, to: &str, headers: HashMap<String, String>) -> Result<(), LiveKitError> {
        let opts = TransferSIPParticipantOptions { headers: Some(headers).filter(|h| !h.is_empty()), ..Default::default() };
        self.sip_client()
            .transfer_sip_participant(room.into(), identity.into(), to.into(), opts)
            .await
            .map_err(|e| self.err(e))
    }

    /// Dispatches agent `agent_name` to `room` (AgentDispatchService
    /// `CreateDispatch`) with `metadata` for the job.
    pub async fn dispatch_agent(&self, room: &str, agent_name: &str, metadata: &str) -> Result<proto::AgentDispatch, LiveKitError> {
        AgentDispatchClient::with_api_key(&self.url, &self.key, &self.secret)
            .create_dispatch(proto::CreateAgentDispatchRequest {
                agent_name: agent_name.into(),
                room: room.into(),
                metadata: metadata.into(),
                ..Default::default()
            })
            .await
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_carries_its_grants_and_attributes_and_verifies() {
        let lk = LiveKit::new("http://127.0.0.1:7880", "APIkey1", "a-secret-of-thirty-two-characters!");
        let req = TokenRequest {
            identity: "caller-1".into(),
            room: Some("call-42".into()),
            grants: vec!["sip-call".into(), "hidden".into()],
            kind: Some("sip".into()),
            attributes: HashMap::from([("sip.phoneNumber".to_string(), "+15550123".to_string())]),
            ttl: Duration::from_secs(600),
            ..Default::default()
        };
        let jwt = lk.token(&req).unwrap();
        let claims = lk.verifier().verify(&jwt).unwrap();
        assert_eq!(claims.sub, "caller-1");
        assert_eq!(claims.iss, "APIkey1");
        assert!(claims.video.room_join && claims.video.hidden && claims.video.room == "call-42");
        assert!(claims.sip.call && !claims.sip.admin);
        assert_eq!(claims.kind, "sip");
        assert_eq!(claims.attributes["sip.phoneNumber"], "+15550123");
        let other = LiveKit::new("http://x", "APIkey1", "another-secret-of-thirty-two-chars");
        assert!(other.verifier().verify(&jwt).is_err(), "a token signed with another secret does not verify");
        let bad = TokenRequest { grants: vec!["superuser".into()], ..req };
        assert!(matches!(lk.token(&bad), Err(LiveKitError::Token(m)) if m.contains("superuser")));
    }
}
