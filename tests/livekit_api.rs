//! LiveKit's server API, end to end: skald's CLI and webhook endpoint
//! against LiveKit's official Python server SDK (`livekit-api` from PyPI,
//! installed by `scripts/livekit-clients.sh`), and skald's LiveKit test
//! double certified by that same SDK.
//!
//! - the SDK drives every Twirp method skald uses against the double
//!   (protobuf, as LiveKit's server speaks it): so the double is LiveKit's
//!   protocol, not skald's idea of it;
//! - `skald livekit token` prints a token the SDK's `TokenVerifier` accepts,
//!   with the grants and attributes asked for;
//! - `skald livekit sip setup` is idempotent; `skald livekit rooms` lists
//!   what the SDK created;
//! - `POST /api/v1/livekit/webhook` accepts a webhook the SDK signed as
//!   livekit-server does, and answers 401 to a tampered one.

mod common;
#[path = "common/livekit.rs"]
mod livekit_double;

use livekit_double::{API_KEY, API_SECRET, LiveKitDouble};
use common::{Skald, example_config, http_raw, repo};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The venv python with `livekit-api` (`scripts/livekit-clients.sh`).
fn python() -> PathBuf {
    let p = repo().join("target/livekit-clients/venv/bin/python");
    assert!(p.exists(), "LiveKit's Python SDK is not installed in {}: run `scripts/livekit-clients.sh` (`make test` does)", p.display());
    p
}

/// Runs `tests/livekit/certify.py` with `args`; its stdout.
fn certify(args: &[&str]) -> String {
    let out = Command::new(python()).arg(repo().join("tests/livekit/certify.py")).args(args).output().unwrap();
    assert!(out.status.success(), "certify.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `skald livekit …` against the double; (success, stdout, stderr).
fn skald_livekit(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skald"))
        .arg("livekit")
        .args(args)
        .current_dir(repo())
        .env("LIVEKIT_URL", url)
        .env("LIVEKIT_API_KEY", API_KEY)
        .env("LIVEKIT_API_SECRET", API_SECRET)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn the_official_sdk_certifies_the_twirp_double() {
    let lk = LiveKitDouble::start();
    let out: serde_json::Value = serde_json::from_str(&certify(&["twirp", &lk.url, API_KEY, API_SECRET])).unwrap();
    assert_eq!(out["rooms"], serde_json::json!(["cert-room"]), "{out}");
    assert_eq!(out["trunks"], serde_json::json!(["cert-trunk"]), "{out}");
    assert_eq!(out["participants"], serde_json::json!(["caller"]), "{out}");
    assert_eq!(out["attributes"]["skald.call"], "c-1", "{out}");
    assert_eq!(out["attributes"]["sip.phoneNumber"], "+15550123", "{out}");
    assert_eq!(out["attributes"]["sip.h.x-skald-context"], "ctx-123", "{out}");
    assert_eq!(out["after_transfer"], serde_json::json!([]), "the transferred caller left the room: {out}");
    assert_eq!(out["bad_secret"], "unauthenticated", "{out}");
    let p = lk.project.lock().unwrap();
    assert_eq!(p.transfers.len(), 1);
    assert_eq!(p.transfers[0].transfer_to, "sip:desk@pbx.example.com");
    assert_eq!(p.transfers[0].headers["X-Skald-Context"], "ctx-123");
    assert_eq!(p.dispatches.len(), 1);
    assert!(p.requests.iter().all(|r| r.content_type.starts_with("application/protobuf")), "the SDK speaks protobuf Twirp");
    assert!(p.requests.iter().all(|r| r.issuer == API_KEY), "every request signed with the project's key");
    let methods: Vec<&str> = p.requests.iter().map(|r| r.method.as_str()).collect();
    for m in ["RoomService/CreateRoom", "SIP/CreateSIPDispatchRule", "SIP/CreateSIPParticipant", "SIP/TransferSIPParticipant", "AgentDispatchService/CreateDispatch"] {
        assert!(methods.contains(&m), "{m} in {methods:?}");
    }
}

#[test]
fn skald_tokens_verify_with_the_official_sdk() {
    let (ok, jwt, err) = skald_livekit(
        "http://127.0.0.1:9",
        &["token", "--room", "call-42", "--identity", "agent-1", "--grant", "admin", "--grant", "sip-call", "--kind", "agent", "--attribute", "skald.role=agent"],
    );
    assert!(ok, "{err}");
    let claims: serde_json::Value = serde_json::from_str(&certify(&["verify", API_KEY, API_SECRET, jwt.trim()])).unwrap();
    assert_eq!(claims["identity"], "agent-1", "{claims}");
    assert_eq!(claims["room"], "call-42", "{claims}");
    assert_eq!(claims["room_join"], true, "{claims}");
    assert_eq!(claims["room_admin"], true, "{claims}");
    assert_eq!(claims["sip_call"], true, "{claims}");
    assert_eq!(claims["sip_admin"], false, "{claims}");
    assert_eq!(claims["kind"], "agent", "{claims}");
    assert_eq!(claims["attributes"]["skald.role"], "agent", "{claims}");
    // Missing credentials: a clear error naming the variable, no token.
    let out = Command::new(env!("CARGO_BIN_EXE_skald")).args(["livekit", "token", "--identity", "x"]).env_remove("LIVEKIT_API_KEY").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("LIVEKIT_API_KEY"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn sip_setup_is_idempotent_and_rooms_are_listed() {
    let lk = LiveKitDouble::start();
    let (ok, first, err) = skald_livekit(&lk.url, &["sip", "setup", "--number", "+15550100"]);
    assert!(ok, "{err}");
    assert!(first.contains("inbound trunk ST_") && first.contains(": created"), "{first}");
    assert!(first.contains("dispatch rule SDR_") && first.contains("rooms call-"), "{first}");
    let (ok, second, err) = skald_livekit(&lk.url, &["sip", "setup", "--number", "+15550100"]);
    assert!(ok, "{err}");
    assert!(!second.contains("created") && second.matches("exists").count() == 2, "{second}");
    {
        let p = lk.project.lock().unwrap();
        assert_eq!(p.trunks.len(), 1, "one trunk after two runs");
        assert_eq!(p.rules.len(), 1, "one rule after two runs");
        assert_eq!(p.trunks[0].numbers, vec!["+15550100".to_string()]);
        assert_eq!(p.rules[0].trunk_ids, vec![p.trunks[0].sip_trunk_id.clone()]);
        let rule = p.rules[0].rule.as_ref().and_then(|r| r.rule.as_ref());
        assert!(
            matches!(rule, Some(livekit_protocol::sip_dispatch_rule::Rule::DispatchRuleIndividual(r)) if r.room_prefix == "call-"),
            "{rule:?}"
        );
    }
    certify(&["twirp", &lk.url, API_KEY, API_SECRET]);
    let (ok, rooms, err) = skald_livekit(&lk.url, &["rooms"]);
    assert!(ok, "{err}");
    assert!(rooms.contains("cert-room"), "{rooms}");
    // A wrong secret: a clear error naming the URL and LiveKit's reason.
    let out = Command::new(env!("CARGO_BIN_EXE_skald"))
        .args(["livekit", "rooms"])
        .env("LIVEKIT_URL", &lk.url)
        .env("LIVEKIT_API_KEY", API_KEY)
        .env("LIVEKIT_API_SECRET", "a-wrong-secret-of-32-characters!!")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&lk.url) && err.contains("unauthenticated"), "{err}");
}

#[test]
fn signed_webhooks_are_accepted_and_tampered_ones_get_401() {
    let skald = Skald::start_with_env(&example_config(), &[("LIVEKIT_API_KEY", API_KEY), ("LIVEKIT_API_SECRET", API_SECRET)]);
    let body = r#"{"event":"participant_joined","id":"EV_cert1","createdAt":"1765000000","room":{"name":"call-7"},"participant":{"identity":"sip_+15550123","attributes":{"sip.phoneNumber":"+15550123"}}}"#;
    let auth = certify(&["sign", API_KEY, API_SECRET, body]);
    let post = |auth: &str, body: &str| {
        http_raw(skald.http_port, "POST", "/api/v1/livekit/webhook", &[("Authorization", auth.trim())], body).unwrap().status
    };
    assert_eq!(post(&auth, body), 200);
    assert_eq!(post(&auth, &body.replace("+15550123", "+15550999")), 401, "the body does not match its hash");
    assert_eq!(post("", body), 401, "no signature");
    let forged = certify(&["sign", API_KEY, "another-secret-of-thirty-two-chars", body]);
    assert_eq!(post(&forged, body), 401, "signed with another secret");
    std::thread::sleep(Duration::from_millis(200));
    let log = skald.log();
    assert_eq!(log.matches("LiveKit webhook refused").count(), 3, "{log}");
    assert!(log.contains("participant_joined"), "{log}");
}

/// Against a real LiveKit (Cloud or self-hosted), only when
/// `LIVEKIT_URL`, `LIVEKIT_API_KEY` and `LIVEKIT_API_SECRET` are set:
/// a room is created, listed and deleted through skald's client.
#[test]
fn a_real_livekit_server_when_configured() {
    let (Ok(url), Ok(key), Ok(secret)) = (std::env::var("LIVEKIT_URL"), std::env::var("LIVEKIT_API_KEY"), std::env::var("LIVEKIT_API_SECRET"))
    else {
        eprintln!("LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET not set: no real LiveKit server to test against");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let lk = skald::transports::livekit::api::LiveKit::new(&url, &key, &secret);
        let name = format!("skald-test-{}", std::process::id());
        lk.create_room(&name, 60).await.expect("create a room");
        assert!(lk.rooms().await.expect("list rooms").iter().any(|r| r.name == name));
        lk.delete_room(&name).await.expect("delete the room");
    });
}
