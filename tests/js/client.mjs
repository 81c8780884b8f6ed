// A matrix-js-sdk client against kith: login, startClient until PREPARED, a room, a
// message, push rules, logout. Usage: node client.mjs <base url> <user> <password>.
// matrix-js-sdk calls Promise.withResolvers (Node 22); Node 20 gets it here.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((a, b) => { resolve = a; reject = b; });
    return { promise, resolve, reject };
  };
}
const sdk = await import("matrix-js-sdk");
const [baseUrl, user, password] = process.argv.slice(2);
const step = (what) => console.log(`step: ${what}`);
const fail = (what) => { console.error(`FAILED: ${what}`); process.exit(1); };
setTimeout(() => fail("the client did not finish within 60 s"), 60_000).unref();

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
  .catch((err) => fail(err.message));
step("startClient reached PREPARED");

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

client.stopClient();
await client.logout(true);
step("logged out");
console.log("OK");
process.exit(0);
