"""LiveKit's official Python server SDK (livekit-api) against skald's
LiveKit test double, and against skald's own tokens and webhooks.

    certify.py twirp URL KEY SECRET     every Twirp call skald uses, through the SDK
    certify.py verify KEY SECRET TOKEN  verify a token (skald's) with the SDK; prints its claims as JSON
    certify.py sign KEY SECRET BODY     sign a webhook body as livekit-server does; prints the Authorization value

Exit 0 with JSON on stdout; any failure raises (non-zero exit).
"""
import asyncio
import base64
import hashlib
import json
import sys

from livekit import api


async def twirp(url, key, secret):
    out = {}
    lk = api.LiveKitAPI(url, key, secret)
    try:
        room = await lk.room.create_room(api.CreateRoomRequest(name="cert-room", empty_timeout=300))
        out["room_sid"] = room.sid
        rooms = await lk.room.list_rooms(api.ListRoomsRequest())
        out["rooms"] = [r.name for r in rooms.rooms]
        trunk = await lk.sip.create_inbound_trunk(
            api.CreateSIPInboundTrunkRequest(trunk=api.SIPInboundTrunkInfo(name="cert-trunk", numbers=["+15550100"]))
        )
        out["trunk_id"] = trunk.sip_trunk_id
        trunks = await lk.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())
        out["trunks"] = [t.name for t in trunks.items]
        rule = await lk.sip.create_dispatch_rule(
            api.CreateSIPDispatchRuleRequest(
                dispatch_rule=api.SIPDispatchRuleInfo(
                    name="cert-rule",
                    trunk_ids=[trunk.sip_trunk_id],
                    rule=api.SIPDispatchRule(dispatch_rule_individual=api.SIPDispatchRuleIndividual(room_prefix="call-")),
                )
            )
        )
        out["rule_id"] = rule.sip_dispatch_rule_id
        part = await lk.sip.create_sip_participant(
            api.CreateSIPParticipantRequest(
                sip_trunk_id=trunk.sip_trunk_id,
                sip_call_to="+15550123",
                room_name="cert-room",
                participant_identity="caller",
                headers={"X-Skald-Context": "ctx-123"},
            )
        )
        out["participant"] = part.participant_identity
        info = await lk.room.update_participant(
            api.UpdateParticipantRequest(room="cert-room", identity="caller", attributes={"skald.call": "c-1"})
        )
        out["attributes"] = dict(info.attributes)
        parts = await lk.room.list_participants(api.ListParticipantsRequest(room="cert-room"))
        out["participants"] = [p.identity for p in parts.participants]
        dispatch = await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="skald", room="cert-room", metadata="{}")
        )
        out["dispatch_id"] = dispatch.id
        await lk.sip.transfer_sip_participant(
            api.TransferSIPParticipantRequest(
                room_name="cert-room",
                participant_identity="caller",
                transfer_to="sip:desk@pbx.example.com",
                headers={"X-Skald-Context": "ctx-123"},
            )
        )
        parts = await lk.room.list_participants(api.ListParticipantsRequest(room="cert-room"))
        out["after_transfer"] = [p.identity for p in parts.participants]
        # A token with the wrong secret is refused, as LiveKit refuses it.
        bad = api.LiveKitAPI(url, key, secret + "-wrong")
        try:
            await bad.room.list_rooms(api.ListRoomsRequest())
            out["bad_secret"] = "accepted"
        except api.TwirpError as e:
            out["bad_secret"] = e.code
        finally:
            await bad.aclose()
    finally:
        await lk.aclose()
    print(json.dumps(out))


def verify(key, secret, token):
    c = api.TokenVerifier(key, secret).verify(token)
    v = c.video
    print(json.dumps({
        "identity": c.identity,
        "name": c.name,
        "kind": c.kind,
        "attributes": dict(c.attributes or {}),
        "room": v.room if v else None,
        "room_join": bool(v and v.room_join),
        "room_admin": bool(v and v.room_admin),
        "room_list": bool(v and v.room_list),
        "sip_call": bool(c.sip and c.sip.call),
        "sip_admin": bool(c.sip and c.sip.admin),
    }))


def sign(key, secret, body):
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    print(api.AccessToken(key, secret).with_sha256(digest).to_jwt())


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "twirp":
        asyncio.run(twirp(*args))
    elif cmd == "verify":
        verify(*args)
    elif cmd == "sign":
        sign(*args)
    else:
        raise SystemExit(f"unknown command {cmd}")
