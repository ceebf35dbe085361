//! A LiveKit server API test double: the Twirp subset skald uses
//! (`POST /twirp/livekit.<Service>/<Method>`, protobuf or JSON bodies as
//! LiveKit's server accepts them), with access-token verification and the
//! grants each method needs. It records every request and applies its
//! effect (rooms, participants, SIP trunks, dispatch rules, SIP
//! participants, transfers, agent dispatches).
//!
//! No LiveKit server is in any registry here, so this double stands in for
//! one; the tests certify it with LiveKit's official Python server SDK
//! (`livekit-api` from PyPI), so it speaks the real protocol. Test code
//! only, never shipped.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use livekit_api::access_token::{Claims, TokenVerifier};
use livekit_protocol as proto;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The double's API key.
pub const API_KEY: &str = "APItestdouble";
/// The double's API secret.
pub const API_SECRET: &str = "test-double-secret-of-32-characters";

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Request {
    /// `RoomService/CreateRoom`, `SIP/TransferSIPParticipant`, …
    pub method: String,
    /// The token's API key (`iss`).
    pub issuer: String,
    /// The body's content type.
    pub content_type: String,
}

/// What the double holds.
#[derive(Default)]
pub struct Project {
    /// Rooms by name.
    pub rooms: BTreeMap<String, proto::Room>,
    /// Participants by room.
    pub participants: BTreeMap<String, Vec<proto::ParticipantInfo>>,
    /// Inbound SIP trunks.
    pub trunks: Vec<proto::SipInboundTrunkInfo>,
    /// Dispatch rules.
    pub rules: Vec<proto::SipDispatchRuleInfo>,
    /// Transfers asked for.
    pub transfers: Vec<proto::TransferSipParticipantRequest>,
    /// Agent dispatches.
    pub dispatches: Vec<proto::AgentDispatch>,
    /// Every request, in order.
    pub requests: Vec<Request>,
    /// Ids handed out.
    next_id: u32,
}

impl Project {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{:04}", self.next_id)
    }
}

/// A running double.
pub struct LiveKitDouble {
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Its state.
    pub project: Arc<Mutex<Project>>,
}

/// A Twirp error response (`{"code":…, "msg":…}` with the matching status).
fn twirp_error(status: StatusCode, code: &str, msg: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], serde_json::json!({ "code": code, "msg": msg }).to_string()).into_response()
}

/// Decodes a request body as its content type says.
fn decode<T: prost::Message + Default + serde::de::DeserializeOwned>(json: bool, body: &[u8]) -> Result<T, Box<Response>> {
    let bad = |e: String| Box::new(twirp_error(StatusCode::BAD_REQUEST, "malformed", &e));
    if json {
        serde_json::from_slice(body).map_err(|e| bad(e.to_string()))
    } else {
        T::decode(body).map_err(|e| bad(e.to_string()))
    }
}

/// Encodes a response in the request's content type.
fn encode<T: prost::Message + serde::Serialize>(json: bool, msg: &T) -> Response {
    if json {
        ([(header::CONTENT_TYPE, "application/json")], serde_json::to_string(msg).unwrap()).into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/protobuf")], msg.encode_to_vec()).into_response()
    }
}

/// Whether `claims` allow `service/method` (LiveKit's grants: roomCreate,
/// roomList, roomAdmin; SIP admin and call).
fn allowed(claims: &Claims, service: &str, method: &str) -> bool {
    let v = &claims.video;
    match (service, method) {
        ("RoomService", "CreateRoom" | "DeleteRoom") => v.room_create,
        ("RoomService", "ListRooms") => v.room_list,
        ("RoomService", _) => v.room_admin,
        ("SIP", "CreateSIPParticipant") => claims.sip.call,
        ("SIP", "TransferSIPParticipant") => claims.sip.call && v.room_admin,
        ("SIP", _) => claims.sip.admin,
        ("AgentDispatchService", _) => v.room_admin,
        _ => false,
    }
}

async fn twirp(State(project): State<Arc<Mutex<Project>>>, Path((service, method)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(service) = service.strip_prefix("livekit.").map(str::to_string) else {
        return twirp_error(StatusCode::NOT_FOUND, "bad_route", "unknown package");
    };
    let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    let claims = match TokenVerifier::with_api_key(API_KEY, API_SECRET).verify(token) {
        Ok(c) => c,
        Err(e) => return twirp_error(StatusCode::UNAUTHORIZED, "unauthenticated", &e.to_string()),
    };
    if !allowed(&claims, &service, &method) {
        return twirp_error(StatusCode::FORBIDDEN, "permission_denied", "the token lacks the grant");
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let json = content_type.starts_with("application/json");
    let mut p = project.lock().unwrap();
    p.requests.push(Request { method: format!("{service}/{method}"), issuer: claims.iss.clone(), content_type });
    macro_rules! req {
        ($t:ty) => {
            match decode::<$t>(json, &body) {
                Ok(r) => r,
                Err(e) => return *e,
            }
        };
    }
    match (service.as_str(), method.as_str()) {
        ("RoomService", "CreateRoom") => {
            let r = req!(proto::CreateRoomRequest);
            let sid = p.id("RM");
            let room = p.rooms.entry(r.name.clone()).or_insert_with(|| proto::Room {
                sid,
                name: r.name.clone(),
                empty_timeout: r.empty_timeout,
                max_participants: r.max_participants,
                creation_time: 1_765_000_000,
                ..Default::default()
            });
            encode(json, &room.clone())
        }
        ("RoomService", "ListRooms") => {
            let r = req!(proto::ListRoomsRequest);
            let rooms = p
                .rooms
                .values()
                .filter(|room| r.names.is_empty() || r.names.contains(&room.name))
                .cloned()
                .map(|mut room| {
                    room.num_participants = p.participants.get(&room.name).map(|v| v.len() as u32).unwrap_or(0);
                    room
                })
                .collect();
            encode(json, &proto::ListRoomsResponse { rooms })
        }
        ("RoomService", "DeleteRoom") => {
            let r = req!(proto::DeleteRoomRequest);
            p.rooms.remove(&r.room);
            p.participants.remove(&r.room);
            encode(json, &proto::DeleteRoomResponse {})
        }
        ("RoomService", "ListParticipants") => {
            let r = req!(proto::ListParticipantsRequest);
            let participants = p.participants.get(&r.room).cloned().unwrap_or_default();
            encode(json, &proto::ListParticipantsResponse { participants })
        }
        ("RoomService", "RemoveParticipant") => {
            let r = req!(proto::RoomParticipantIdentity);
            let Some(list) = p.participants.get_mut(&r.room) else {
                return twirp_error(StatusCode::NOT_FOUND, "not_found", "no such room");
            };
            list.retain(|x| x.identity != r.identity);
            encode(json, &proto::RemoveParticipantResponse {})
        }
        ("RoomService", "UpdateParticipant") => {
            let r = req!(proto::UpdateParticipantRequest);
            let Some(part) = p.participants.get_mut(&r.room).and_then(|l| l.iter_mut().find(|x| x.identity == r.identity)) else {
                return twirp_error(StatusCode::NOT_FOUND, "not_found", "no such participant");
            };
            for (k, v) in r.attributes {
                if v.is_empty() {
                    part.attributes.remove(&k);
                } else {
                    part.attributes.insert(k, v);
                }
            }
            if !r.metadata.is_empty() {
                part.metadata = r.metadata;
            }
            let out = part.clone();
            encode(json, &out)
        }
        ("SIP", "CreateSIPInboundTrunk") => {
            let r = req!(proto::CreateSipInboundTrunkRequest);
            let mut t = r.trunk.unwrap_or_default();
            t.sip_trunk_id = p.id("ST");
            p.trunks.push(t.clone());
            encode(json, &t)
        }
        ("SIP", "ListSIPInboundTrunk") => {
            let _ = req!(proto::ListSipInboundTrunkRequest);
            encode(json, &proto::ListSipInboundTrunkResponse { items: p.trunks.clone() })
        }
        ("SIP", "CreateSIPDispatchRule") => {
            let r = req!(proto::CreateSipDispatchRuleRequest);
            #[allow(deprecated)]
            let mut d = r.dispatch_rule.unwrap_or(proto::SipDispatchRuleInfo {
                rule: r.rule,
                trunk_ids: r.trunk_ids,
                name: r.name,
                ..Default::default()
            });
            d.sip_dispatch_rule_id = p.id("SDR");
            p.rules.push(d.clone());
            encode(json, &d)
        }
        ("SIP", "ListSIPDispatchRule") => {
            let _ = req!(proto::ListSipDispatchRuleRequest);
            encode(json, &proto::ListSipDispatchRuleResponse { items: p.rules.clone() })
        }
        ("SIP", "CreateSIPParticipant") => {
            let r = req!(proto::CreateSipParticipantRequest);
            let participant_id = p.id("PA");
            let call_id = p.id("SCL");
            let identity = if r.participant_identity.is_empty() { format!("sip_{}", r.sip_call_to) } else { r.participant_identity.clone() };
            let mut attributes: std::collections::HashMap<String, String> = r.participant_attributes.clone();
            attributes.insert("sip.callID".into(), call_id.clone());
            attributes.insert("sip.trunkID".into(), r.sip_trunk_id.clone());
            attributes.insert("sip.phoneNumber".into(), r.sip_call_to.clone());
            attributes.insert("sip.callStatus".into(), "active".into());
            for (k, v) in &r.headers {
                attributes.insert(format!("sip.h.{}", k.to_ascii_lowercase()), v.clone());
            }
            let sid = p.id("RM");
            p.rooms.entry(r.room_name.clone()).or_insert_with(|| proto::Room { sid, name: r.room_name.clone(), ..Default::default() });
            p.participants.entry(r.room_name.clone()).or_default().push(proto::ParticipantInfo {
                sid: participant_id.clone(),
                identity: identity.clone(),
                kind: proto::participant_info::Kind::Sip as i32,
                attributes,
                ..Default::default()
            });
            encode(
                json,
                &proto::SipParticipantInfo { participant_id, participant_identity: identity, room_name: r.room_name, sip_call_id: call_id },
            )
        }
        ("SIP", "TransferSIPParticipant") => {
            let r = req!(proto::TransferSipParticipantRequest);
            let Some(list) = p.participants.get_mut(&r.room_name) else {
                return twirp_error(StatusCode::NOT_FOUND, "not_found", "no such room");
            };
            if !list.iter().any(|x| x.identity == r.participant_identity && x.kind == proto::participant_info::Kind::Sip as i32) {
                return twirp_error(StatusCode::NOT_FOUND, "not_found", "no such SIP participant");
            }
            // The REFER succeeded: the caller left the room for the target.
            list.retain(|x| x.identity != r.participant_identity);
            p.transfers.push(r);
            encode(json, &proto::TransferSipParticipantResponse::default())
        }
        ("AgentDispatchService", "CreateDispatch") => {
            let r = req!(proto::CreateAgentDispatchRequest);
            let d = proto::AgentDispatch { id: p.id("AD"), agent_name: r.agent_name, room: r.room, metadata: r.metadata, ..Default::default() };
            p.dispatches.push(d.clone());
            encode(json, &d)
        }
        ("AgentDispatchService", "ListDispatch") => {
            let r = req!(proto::ListAgentDispatchRequest);
            let agent_dispatches = p.dispatches.iter().filter(|d| d.room == r.room).cloned().collect();
            encode(json, &proto::ListAgentDispatchResponse { agent_dispatches })
        }
        _ => twirp_error(StatusCode::NOT_FOUND, "bad_route", &format!("{service}/{method} is not in the double")),
    }
}

impl LiveKitDouble {
    /// Starts the double on a free loopback port (its own thread and
    /// runtime, so blocking tests can use it).
    pub fn start() -> LiveKitDouble {
        let project = Arc::new(Mutex::new(Project::default()));
        let app = axum::Router::new().route("/twirp/{service}/{method}", axum::routing::post(twirp)).with_state(project.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        LiveKitDouble { url, project }
    }
}
