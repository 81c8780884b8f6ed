// matrix-js-sdk clients against two kith servers: login, startClient until PREPARED,
// push rules, a room and a message, a DM with a user of the other server (who accepts
// it), an image uploaded and downloaded with its thumbnail, an avatar, devices listed
// and renamed, a password change, logout.
// Usage: node client.mjs <base url> <user> <password> <other base url> <other user> <other password>.
// matrix-js-sdk calls Promise.withResolvers (Node 22); Node 20 gets it here.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((a, b) => { resolve = a; reject = b; });
    return { promise, resolve, reject };
  };
}
const sdk = await import("matrix-js-sdk");
const [baseUrl, user, password, otherBaseUrl, otherUser, otherPassword] = process.argv.slice(2);
const step = (what) => console.log(`step: ${what}`);
const fail = (what) => { console.error(`FAILED: ${what}`); process.exit(1); };
setTimeout(() => fail("the clients did not finish within 90 s"), 90_000).unref();

/// Waits until `check()` is true, polling; fails with `what` after `ms`.
async function until(what, check, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) fail(what);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function startedClient(baseUrl, user, password) {
  const login = await sdk.createClient({ baseUrl }).loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user },
    password,
    initial_device_display_name: "js-sdk test",
  });
  step(`logged in as ${login.user_id}`);
  const client = sdk.createClient({ baseUrl, accessToken: login.access_token, userId: login.user_id, deviceId: login.device_id });
  const prepared = new Promise((resolve, reject) => {
    client.on(sdk.ClientEvent.Sync, (state, _previous, data) => {
      if (state === "PREPARED") resolve();
      if (state === "ERROR") reject(new Error(`sync error: ${data?.error?.message ?? data?.error}`));
    });
  });
  await client.startClient({ initialSyncLimit: 10 });
  await Promise.race([prepared, new Promise((_, reject) => setTimeout(() => reject(new Error("not PREPARED within 20 s")), 20_000))])
    .catch((err) => fail(`${login.user_id}: ${err.message}`));
  step(`${login.user_id}: startClient reached PREPARED`);
  return client;
}

const client = await startedClient(baseUrl, user, password);
const other = await startedClient(otherBaseUrl, otherUser, otherPassword);

const rules = client.pushRules;
if (!rules?.global?.override?.some((rule) => rule.rule_id === ".m.rule.master")) fail("no server-default push rules");
step("push rules loaded");

const { room_id } = await client.createRoom({ name: "js room" });
const sent = await client.sendTextMessage(room_id, "hello from matrix-js-sdk");
step(`sent ${sent.event_id} to ${room_id}`);
const seen = await new Promise((resolve) => {
  const check = () => client.getRoom(room_id)?.getLiveTimeline().getEvents().some((e) => e.getId() === sent.event_id);
  if (check()) return resolve(true);
  const timer = setInterval(() => { if (check()) { clearInterval(timer); resolve(true); } }, 100);
  setTimeout(() => { clearInterval(timer); resolve(false); }, 10_000);
});
if (!seen) fail("the message never came back through /sync");
step("the message came back through /sync");

// A DM with the user of the other server, who accepts it.
const otherId = other.getUserId();
const dm = await client.createRoom({ is_direct: true, invite: [otherId], preset: "trusted_private_chat" });
await until("the DM invite never reached the other server", () => other.getRoom(dm.room_id)?.getMyMembership() === "invite");
await other.joinRoom(dm.room_id);
await until("the other user's join never came back", () => client.getRoom(dm.room_id)?.getMember(otherId)?.membership === "join");
const dmMessage = await other.sendTextMessage(dm.room_id, "hi across servers");
await until("the DM reply never arrived", () =>
  client.getRoom(dm.room_id)?.getLiveTimeline().getEvents().some((e) => e.getId() === dmMessage.event_id));
step("a DM across servers, accepted and answered");

// An image: uploaded, downloaded (authenticated media) and thumbnailed, here and there.
const png = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR4nGM4YWQERwzEcQDxIxLBm7UkwAAAAABJRU5ErkJggg==",
  "base64");
const { content_uri } = await client.uploadContent(png, { type: "image/png", name: "pixel.png" });
const fetchMedia = async (sdkClient, url) => {
  const response = await fetch(url, { headers: { Authorization: `Bearer ${sdkClient.getAccessToken()}` } });
  if (!response.ok) fail(`GET ${url}: ${response.status} ${await response.text()}`);
  return { type: response.headers.get("content-type"), bytes: Buffer.from(await response.arrayBuffer()) };
};
for (const sdkClient of [client, other]) {
  const download = await fetchMedia(sdkClient, sdkClient.mxcUrlToHttp(content_uri, undefined, undefined, undefined, false, true, true));
  if (!download.bytes.equals(png) || download.type !== "image/png") fail(`the image came back different from ${sdkClient.getUserId()}'s server`);
  const thumbnail = await fetchMedia(sdkClient, sdkClient.mxcUrlToHttp(content_uri, 32, 32, "crop", false, true, true));
  if (!thumbnail.type.startsWith("image/") || thumbnail.bytes.length === 0) fail("no thumbnail");
}
step(`uploaded ${content_uri}, downloaded it and its thumbnail on both servers`);

await client.setAvatarUrl(content_uri);
const profile = await other.getProfileInfo(client.getUserId());
if (profile.avatar_url !== content_uri) fail(`the avatar is ${profile.avatar_url}`);
step("avatar set, seen from the other server");

const { devices } = await client.getDevices();
if (!devices.some((d) => d.device_id === client.getDeviceId())) fail("this device is not listed");
await client.setDeviceDetails(client.getDeviceId(), { display_name: "renamed by js" });
const renamed = await client.getDevice(client.getDeviceId());
if (renamed.display_name !== "renamed by js") fail("the device was not renamed");
step(`${devices.length} device(s) listed, this one renamed`);

// A space with a room in it, walked as Element's space view does.
const space = await client.createRoom({ name: "js space", preset: "public_chat", creation_content: { type: "m.space" } });
const child = await client.createRoom({ name: "js space room", preset: "public_chat" });
await client.sendStateEvent(space.room_id, "m.space.child", { via: [client.getDomain()] }, child.room_id);
const hierarchy = await client.getRoomHierarchy(space.room_id, 10, 2, false);
const listed = hierarchy.rooms.map((room) => room.room_id);
if (listed.join() !== [space.room_id, child.room_id].join()) fail(`the hierarchy lists ${listed}`);
if (hierarchy.rooms[0].room_type !== "m.space") fail("the space is not a space in its hierarchy");
if (hierarchy.rooms[0].children_state.length !== 1) fail("the space's child event is missing");
step("a space and its room, walked with /hierarchy");

const auth = { type: "m.login.password", identifier: { type: "m.id.user", user }, password };
await client.setPassword(auth, `${password} 2`, false);
await sdk.createClient({ baseUrl }).loginRequest({
  type: "m.login.password", identifier: { type: "m.id.user", user }, password: `${password} 2`,
}).catch((err) => fail(`cannot log in with the new password: ${err.message}`));
step("password changed");

other.stopClient();
client.stopClient();
await client.logout(true);
step("logged out");
console.log("OK");
process.exit(0);
