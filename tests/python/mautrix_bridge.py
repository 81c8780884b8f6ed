"""A bridge written with mautrix-python's AppService, driven by the test over stdin.

Usage: mautrix_bridge.py <homeserver url> <server name> <as port> <as_token> <hs_token>
       <sender localpart> <appservice id>

Each stdin line is a JSON command; each answer is one JSON line on stdout. Commands:
whoami, ping, register {localpart}, create_room {invite}, puppet_send {localpart,
room_id, text}, refuse {count}, wait_message {body, timeout}, wait_ephemeral {type,
room_id, has, timeout}, register_device {localpart, device_id}, wait_to_device
{timeout}, queries, stop.
The bridge records every transaction it is sent (id, status answered, message bodies)
and every message event its handler processed, so the test can check retries and
that each event is processed once, and the user and alias queries it was asked, answering
for the users @slack_ghost… and the aliases #slack_channel… by creating them. It
describes one third-party protocol, `slack`.
"""

import asyncio
import json
import logging
import sys

from aiohttp import web
from mautrix.api import Method, Path
from mautrix.appservice import AppService
from mautrix.errors import MatrixRequestError
from mautrix.types import EventType, RoomCreatePreset

logging.basicConfig(stream=sys.stderr, level=logging.WARNING)


def answer(value):
    print(json.dumps(value), flush=True)


async def main():
    server, domain, port, as_token, hs_token, sender, as_id = sys.argv[1:8]
    queries = []  # ["user" or "alias", the ID asked about]

    async def query_user(user_id):
        # Ghosts are created on demand, as bridges do for people of the remote network.
        queries.append(["user", user_id])
        if not user_id.startswith("@slack_ghost"):
            return None
        await appservice.intent.user(user_id)._register()
        return {"created": True}  # mautrix answers 404 for anything falsy, {} included

    async def query_alias(alias):
        # A channel's room is created the first time someone asks for its alias.
        queries.append(["alias", alias])
        localpart = alias[1:].split(":", 1)[0]
        if not localpart.startswith("slack_channel"):
            return None
        await appservice.intent.create_room(alias_localpart=localpart, preset=RoomCreatePreset.PUBLIC)
        return {"created": True}

    appservice = AppService(
        query_user=query_user,
        query_alias=query_alias,
        server=server,
        domain=domain,
        as_token=as_token,
        hs_token=hs_token,
        bot_localpart=sender,
        id=as_id,
        state_store=None,
        ephemeral_events=True,
        encryption_events=True,  # to-device messages (MSC2409)
        verify_ssl=False,  # a federating test server has a self-signed certificate
    )
    transactions = []  # {"txn_id", "status", "bodies"}
    handled = []  # (event_id, body)
    ephemeral = []  # typing, receipts and presence as mautrix parsed them
    to_device = []  # to-device messages for the bridge's users, as mautrix parsed them
    refusals = {"left": 0}

    @web.middleware
    async def record(request, handler):
        if request.method != "PUT" or "/transactions/" not in request.path:
            return await handler(request)
        body = await request.json()
        bodies = [e.get("content", {}).get("body") for e in body.get("events", [])]
        txn_id = request.match_info.get("transaction_id") or request.path.rsplit("/", 1)[-1]
        if refusals["left"] > 0:
            refusals["left"] -= 1
            transactions.append({"txn_id": txn_id, "status": 500, "bodies": bodies})
            return web.json_response({"errcode": "M_UNKNOWN", "error": "refused by the test"}, status=500)
        response = await handler(request)
        transactions.append({"txn_id": txn_id, "status": response.status, "bodies": bodies})
        return response

    appservice.app.middlewares.append(record)
    add_thirdparty_routes(appservice.app, domain, hs_token)

    @appservice.matrix_event_handler
    async def on_event(event):
        if event.type == EventType.ROOM_MESSAGE:
            handled.append((event.event_id, event.content.body))
        elif event.type in (EventType.TYPING, EventType.RECEIPT, EventType.PRESENCE):
            room_id = getattr(event, "room_id", None)  # presence has none
            ephemeral.append({"type": event.type.t, "room_id": room_id, "content": event.serialize()["content"]})

    async def on_to_device(event):
        to_device.append(event.serialize())

    appservice.to_device_handler = on_to_device
    await appservice.start(host="127.0.0.1", port=int(port))
    answer({"ready": True})
    bot = appservice.intent
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    while True:
        line = await reader.readline()
        if not line:
            break
        command = json.loads(line)
        try:
            result = await run(command, appservice, bot, transactions, handled, refusals, queries, ephemeral, to_device)
        except MatrixRequestError as err:
            result = {"errcode": err.errcode, "error": err.message, "status": err.http_status}
        answer(result)
        if command["cmd"] == "stop":
            break
    await appservice.stop()


def add_thirdparty_routes(app, domain, hs_token):
    """The Slack network as a bridge describes it (mautrix leaves these to the bridge)."""

    def authorised(request):
        return request.headers.get("Authorization") == f"Bearer {hs_token}"

    async def protocol(request):
        if not authorised(request) or request.match_info["protocol"] != "slack":
            return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
        return web.json_response({
            "user_fields": ["name"],
            "location_fields": ["channel"],
            "icon": "mxc://kith.test/slack",
            "field_types": {
                "name": {"regexp": "[a-z]+", "placeholder": "bob"},
                "channel": {"regexp": "[a-z]+", "placeholder": "general"},
            },
            "instances": [{"desc": "Example workspace", "fields": {}, "network_id": "example"}],
        })

    async def users(request):
        if not authorised(request):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        name = request.query.get("name")
        found = [{"userid": f"@slack_{name}:{domain}", "protocol": "slack", "fields": {"name": name}}]
        return web.json_response(found if name else [])

    async def locations(request):
        if not authorised(request):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        channel = request.query.get("channel")
        found = [{"alias": f"#slack_channel_{channel}:{domain}", "protocol": "slack", "fields": {"channel": channel}}]
        return web.json_response(found if channel else [])

    app.router.add_route("GET", "/_matrix/app/v1/thirdparty/protocol/{protocol}", protocol)
    app.router.add_route("GET", "/_matrix/app/v1/thirdparty/user/{protocol}", users)
    app.router.add_route("GET", "/_matrix/app/v1/thirdparty/location/{protocol}", locations)


async def run(command, appservice, bot, transactions, handled, refusals, queries, ephemeral, to_device):
    cmd = command["cmd"]
    if cmd == "whoami":
        whoami = await bot.whoami()
        return {"user_id": whoami.user_id}
    if cmd == "ping":
        # The answer itself: mautrix's ping_self turns a 0 ms ping into -1.
        content = {"transaction_id": command["txn_id"]} if "txn_id" in command else {}
        return await bot.api.request(Method.POST, Path.v1.appservice[appservice.id].ping, content=content)
    if cmd == "register":
        puppet = bot.user(f"@{command['localpart']}:{appservice.domain}")
        await puppet._register()
        return {"user_id": puppet.mxid}
    if cmd == "create_room":
        room_id = await bot.create_room(invitees=command.get("invite", []))
        return {"room_id": room_id}
    if cmd == "puppet_send":
        puppet = bot.user(f"@{command['localpart']}:{appservice.domain}")
        await puppet.ensure_joined(command["room_id"])
        event_id = await puppet.send_text(command["room_id"], command["text"])
        whoami = await puppet.whoami()
        return {"event_id": event_id, "sender": whoami.user_id}
    if cmd == "refuse":
        refusals["left"] = command["count"]
        return {"ok": True}
    if cmd == "wait_message":
        deadline = asyncio.get_running_loop().time() + command.get("timeout", 30)
        while asyncio.get_running_loop().time() < deadline:
            if any(body == command["body"] for _, body in handled):
                break
            await asyncio.sleep(0.05)
        carrying = [t for t in transactions if command["body"] in t["bodies"]]
        times = sum(1 for _, body in handled if body == command["body"])
        return {"handled": times, "transactions": carrying}
    if cmd == "wait_ephemeral":
        # Those of a type in a room whose content names `has`, once there is one.
        def matching():
            return [e for e in ephemeral if e["type"] == command["type"] and e["room_id"] == command["room_id"]
                    and command["has"] in json.dumps(e["content"])]
        deadline = asyncio.get_running_loop().time() + command.get("timeout", 30)
        while not matching() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return {"events": matching()}
    if cmd == "register_device":
        # A bridged user with a device, as encrypted bridges have.
        content = {"type": "m.login.application_service", "username": command["localpart"],
                   "device_id": command["device_id"]}
        return await bot.api.request(Method.POST, Path.v3.register, content=content)
    if cmd == "wait_to_device":
        deadline = asyncio.get_running_loop().time() + command.get("timeout", 30)
        while not to_device and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return {"messages": to_device}
    if cmd == "queries":
        return {"queries": queries}
    if cmd == "stop":
        return {"ok": True}
    return {"error": f"unknown command {cmd}"}


asyncio.run(main())
