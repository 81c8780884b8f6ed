"""matrix-nio clients against two kith servers, as a Python bot or client would use
them: login, first sync, a room and a message, a DM with a user of the other server
(who accepts it), an image uploaded and downloaded with its thumbnail on both servers,
an avatar, devices listed and renamed, a password change, logout.

Usage: python nio_client.py <base url> <user> <password> <other base url> <other user> <other password>
"""

import asyncio
import struct
import sys
import zlib

import nio


def fail(what):
    print(f"FAILED: {what}", file=sys.stderr)
    sys.exit(1)


def step(what):
    print(f"step: {what}", flush=True)


def png(width, height):
    """A small opaque PNG, built with the standard library."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + bytes([200, 50, 50]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


async def until(what, check, client, seconds=15):
    """Syncs until check() holds."""
    for _ in range(int(seconds * 4)):
        if check():
            return
        await client.sync(timeout=250)
    fail(what)


SEEN = set()


async def remember(_room, event):
    SEEN.add(event.event_id)


async def logged_in(base, user, password):
    # Loopback servers with self-signed certificates.
    client = nio.AsyncClient(base, user, ssl=False)
    client.add_event_callback(remember, nio.RoomMessageText)
    response = await client.login(password, device_name="nio test")
    if not isinstance(response, nio.LoginResponse):
        fail(f"login of {user}: {response}")
    first = await client.sync(timeout=0, full_state=True)
    if not isinstance(first, nio.SyncResponse):
        fail(f"first sync of {user}: {first}")
    step(f"{client.user_id} logged in and synced")
    return client


async def main():
    base, user, password, other_base, other_user, other_password = sys.argv[1:7]
    client = await logged_in(base, user, password)
    other = await logged_in(other_base, other_user, other_password)
    try:
        await scenario(client, other, user, password)
    finally:
        await other.close()
        await client.close()


async def scenario(client, other, user, password):
    room = await client.room_create(name="nio room")
    if not isinstance(room, nio.RoomCreateResponse):
        fail(f"room_create: {room}")
    sent = await client.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": "hello from nio"})
    if not isinstance(sent, nio.RoomSendResponse):
        fail(f"room_send: {sent}")
    await until("the message never came back through /sync", lambda: sent.event_id in SEEN, client)
    step("a room and a message, seen through /sync")

    dm = await client.room_create(is_direct=True, invite=[other.user_id], preset=nio.RoomPreset.trusted_private_chat)
    await until("the DM invite never reached the other server", lambda: dm.room_id in other.invited_rooms, other)
    joined = await other.join(dm.room_id)
    if not isinstance(joined, nio.JoinResponse):
        fail(f"join: {joined}")
    await until("the other user's join never came back",
                lambda: other.user_id in getattr(client.rooms.get(dm.room_id), "users", {}), client)
    step("a DM across servers, accepted")

    image = png(64, 48)
    uploaded, _ = await client.upload(lambda *_: image, content_type="image/png", filename="pixel.png",
                                      filesize=len(image))
    if not isinstance(uploaded, nio.UploadResponse):
        fail(f"upload: {uploaded}")
    for reader in (client, other):
        got = await reader.download(mxc=uploaded.content_uri)
        if not isinstance(got, nio.DownloadResponse) or got.body != image:
            fail(f"download from {reader.homeserver}: {got}")
        server, media_id = uploaded.content_uri[len("mxc://"):].split("/", 1)
        thumb = await reader.thumbnail(server, media_id, 32, 32, nio.ResizingMethod.crop)
        if not isinstance(thumb, nio.ThumbnailResponse) or not thumb.content_type.startswith("image/"):
            fail(f"thumbnail from {reader.homeserver}: {thumb}")
    step(f"uploaded {uploaded.content_uri}, downloaded it and its thumbnail on both servers")

    if not isinstance(await client.set_avatar(uploaded.content_uri), nio.ProfileSetAvatarResponse):
        fail("set_avatar")
    avatar = await other.get_avatar(client.user_id)
    if getattr(avatar, "avatar_url", None) != uploaded.content_uri:
        fail(f"the avatar seen from the other server: {avatar}")
    step("avatar set, seen from the other server")

    devices = await client.devices()
    if not isinstance(devices, nio.DevicesResponse) or client.device_id not in [d.id for d in devices.devices]:
        fail(f"devices: {devices}")
    await client.update_device(client.device_id, {"display_name": "renamed by nio"})
    devices = await client.devices()
    if [d.display_name for d in devices.devices if d.id == client.device_id] != ["renamed by nio"]:
        fail("the device was not renamed")
    step(f"{len(devices.devices)} device(s) listed, this one renamed")

    # matrix-nio has no password-change call; its HTTP session makes the request.
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}
    body = {"auth": auth, "new_password": password + " 2", "logout_devices": False}
    async with client.client_session.post(
        f"{client.homeserver}/_matrix/client/v3/account/password", json=body,
        headers={"Authorization": f"Bearer {client.access_token}"}, ssl=False,
    ) as response:
        if response.status != 200:
            fail(f"password change: {response.status} {await response.text()}")
    again = nio.AsyncClient(client.homeserver, user, ssl=False)
    relogin = await again.login(password + " 2")
    await again.close()
    if not isinstance(relogin, nio.LoginResponse):
        fail(f"cannot log in with the new password: {relogin}")
    step("password changed")

    if not isinstance(await client.logout(), nio.LogoutResponse):
        fail("logout")
    step("logged out")
    print("OK", flush=True)


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), timeout=90))
