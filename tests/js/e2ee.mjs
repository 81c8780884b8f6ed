// End-to-end encryption with matrix-js-sdk and its Rust crypto, between two users on (possibly)
// two servers: device keys and one-time keys uploaded and claimed, cross-signing bootstrapped
// (with user-interactive auth), secret storage and a server-side key backup created, an
// encrypted DM whose messages each side decrypts (megolm keys sent as olm to-device messages),
// then a second device of Alice that reads the history from the key backup and cross-signs
// itself from secret storage, and Bob seeing both of Alice's devices, signed by her.
// Usage: node e2ee.mjs <alice base url> <alice user> <alice password> <bob base url> <bob user> <bob password>.
// Set E2EE_DEBUG=1 to see the SDK's own logging.
// matrix-js-sdk calls Promise.withResolvers (Node 22); Node 20 gets it here.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((a, b) => { resolve = a; reject = b; });
    return { promise, resolve, reject };
  };
}
// The SDK and its Rust crypto log a lot through console.*: keep the last lines, shown on
// failure (E2EE_DEBUG=1 shows them all as they come). Our own lines go straight to stdout/stderr.
const sdkLog = [];
if (!process.env.E2EE_DEBUG) {
  const { format } = await import("node:util");
  for (const level of ["log", "info", "debug", "warn", "error", "trace"]) {
    console[level] = (...args) => { sdkLog.push(`[${level}] ${format(...args)}`); if (sdkLog.length > 40) sdkLog.shift(); };
  }
}
const sdk = await import("matrix-js-sdk");
const { decodeRecoveryKey } = await import("matrix-js-sdk/lib/crypto-api/index.js");
const [aliceUrl, aliceUser, alicePassword, bobUrl, bobUser, bobPassword] = process.argv.slice(2);
const step = (what) => process.stdout.write(`step: ${what}\n`);
const fail = (what) => {
  if (sdkLog.length) process.stderr.write(`last SDK log lines:\n${sdkLog.join("\n")}\n`);
  process.stderr.write(`FAILED: ${what}\n`);
  process.exit(1);
};
setTimeout(() => fail("the E2EE checks did not finish within 150 s"), 150_000).unref();
process.on("unhandledRejection", (err) => fail(`unhandled rejection: ${err?.stack ?? err}`));

/// Waits until `check()` is true, polling; fails with `what` (a string, or a function giving
/// one) after `ms`.
async function until(what, check, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) fail(typeof what === "function" ? what() : what);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/// Runs `promise`, failing with `what` (and the error) if it rejects.
const must = (what, promise) => promise.catch((err) => fail(`${what}: ${err?.data?.error ?? err?.message ?? err}`));

/// Logs in a new device, sets up Rust crypto (in memory) and syncs until PREPARED.
async function startedClient(baseUrl, user, password, cryptoCallbacks = {}) {
  const login = await must(`${user} cannot log in`, sdk.createClient({ baseUrl }).loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user },
    password,
    initial_device_display_name: "js-sdk e2ee test",
  }));
  const client = sdk.createClient({
    baseUrl, accessToken: login.access_token, userId: login.user_id, deviceId: login.device_id,
    cryptoCallbacks,
  });
  await must(`${login.user_id}: initRustCrypto`, client.initRustCrypto({ useIndexedDB: false }));
  const prepared = new Promise((resolve, reject) => {
    client.on(sdk.ClientEvent.Sync, (state, _previous, data) => {
      if (state === "PREPARED") resolve();
      if (state === "ERROR") reject(new Error(`sync error: ${data?.error?.message ?? data?.error}`));
    });
  });
  await client.startClient({ initialSyncLimit: 20 });
  await must(`${login.user_id} device ${login.device_id}`, Promise.race([prepared,
    new Promise((_, reject) => setTimeout(() => reject(new Error("not PREPARED within 20 s")), 20_000))]));
  step(`${login.user_id} logged in as device ${login.device_id}, Rust crypto up, sync PREPARED`);
  return client;
}

/// Answers user-interactive auth with the password (trying first without auth, as the first
/// cross-signing upload may need none).
const passwordAuth = (user, password) => async (makeRequest) => {
  try {
    return await makeRequest(null);
  } catch (err) {
    if (err.httpStatus !== 401 || !err.data?.flows) throw err;
    return await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user }, password, session: err.data.session });
  }
};

/// Whether the event `eventId` has arrived in the room, encrypted, and decrypts to `text`.
async function decrypted(client, roomId, eventId, text) {
  const event = client.getRoom(roomId)?.findEventById(eventId);
  if (!event) return false;
  if (event.getWireType() !== "m.room.encrypted") fail(`${eventId} reached ${client.getUserId()} unencrypted`);
  await client.decryptEventIfNeeded(event);
  return !event.isDecryptionFailure() && event.getClearContent()?.body === text;
}
/// Why `eventId` is not (yet) readable by `client`, for failure messages.
const failure = (client, roomId, eventId) => {
  const event = client.getRoom(roomId)?.findEventById(eventId);
  return !event ? "not received" : event.decryptionFailureReason ?? `clear content ${JSON.stringify(event.getClearContent())}`;
};

// 1. Both users log in and sync.
let secretStorageKey = null;
const alice = await startedClient(aliceUrl, aliceUser, alicePassword, {
  // Secret storage asks for its key again after creating it: hand back the one just cached.
  cacheSecretStorageKey: (keyId, _info, key) => { secretStorageKey = [keyId, key]; },
  getSecretStorageKey: async () => secretStorageKey,
});
const bob = await startedClient(bobUrl, bobUser, bobPassword);
const aliceId = alice.getUserId(), bobId = bob.getUserId();
const aliceCrypto = alice.getCrypto(), bobCrypto = bob.getCrypto();

// 2. Secret storage, cross-signing (new keys even if the account has some) and a key backup.
const backupProbe = await fetch(`${aliceUrl}/_matrix/client/v3/room_keys/version`, { headers: { Authorization: `Bearer ${alice.getAccessToken()}` } });
const probeBody = await backupProbe.json().catch(() => ({}));
if (!backupProbe.ok && probeBody.errcode !== "M_NOT_FOUND") fail(`the server has no key backup: GET /room_keys/version gave ${backupProbe.status} ${JSON.stringify(probeBody)}`);
let recoveryKey;
await must("bootstrapSecretStorage", aliceCrypto.bootstrapSecretStorage({
  createSecretStorageKey: async () => {
    const key = await aliceCrypto.createRecoveryKeyFromPassphrase();
    recoveryKey = key.encodedPrivateKey;
    return key;
  },
  setupNewSecretStorage: true,
}));
step("Alice set up secret storage (a new default key in account data)");
await must("bootstrapCrossSigning", aliceCrypto.bootstrapCrossSigning({
  setupNewCrossSigning: true, authUploadDeviceSigningKeys: passwordAuth(aliceUser, alicePassword),
}));
if (!(await aliceCrypto.isCrossSigningReady())) fail("cross-signing is not ready after bootstrapCrossSigning");
step("Alice bootstrapped cross-signing (keys uploaded, her device signed, private keys in secret storage)");
await must("resetKeyBackup", aliceCrypto.resetKeyBackup());
if (!(await aliceCrypto.isSecretStorageReady())) fail("secret storage is not ready (cross-signing and backup keys in it)");
const backupVersion = await aliceCrypto.getActiveSessionBackupVersion();
if (!backupVersion) fail("no active key backup after resetKeyBackup");
step(`Alice created key backup version ${backupVersion}, its key in secret storage`);

// 3. An encrypted DM; Bob joins.
const { room_id: roomId } = await must("createRoom", alice.createRoom({
  is_direct: true, invite: [bobId], preset: "trusted_private_chat", name: "e2ee dm",
  initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
}));
await until("Alice's client never saw her room as encrypted", () => aliceCrypto.isEncryptionEnabledInRoom(roomId));
await until("the invite never reached Bob", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
await must("Bob's join", bob.joinRoom(roomId));
await until("Bob's client never saw the room as encrypted", () => bobCrypto.isEncryptionEnabledInRoom(roomId));
await until("Bob's join never reached Alice", () => alice.getRoom(roomId)?.getMember(bobId)?.membership === "join");
step(`Alice created encrypted DM ${roomId}; Bob joined`);

// 4. Each sends a message; each decrypts the other's.
const aliceText = "hello Bob, this is secret", bobText = "hi Alice, secret too";
const fromAlice = await must("Alice's message", alice.sendTextMessage(roomId, aliceText));
const fromBob = await must("Bob's message", bob.sendTextMessage(roomId, bobText));
step(`Alice sent ${fromAlice.event_id}, Bob sent ${fromBob.event_id}`);
await until(() => `Bob never decrypted Alice's message (${failure(bob, roomId, fromAlice.event_id)})`,
  () => decrypted(bob, roomId, fromAlice.event_id, aliceText), 30_000);
await until(() => `Alice never decrypted Bob's message (${failure(alice, roomId, fromBob.event_id)})`,
  () => decrypted(alice, roomId, fromBob.event_id, bobText), 30_000);
step("each side decrypted the other's message");

// 5. A second device of Alice: secret storage with the recovery key, cross-signs itself, and
//    restores the key backup to read Bob's earlier message.
const alice2 = await startedClient(aliceUrl, aliceUser, alicePassword, {
  getSecretStorageKey: async ({ keys }) => [Object.keys(keys)[0], decodeRecoveryKey(recoveryKey)],
});
const alice2Crypto = alice2.getCrypto();
await until("the second device never saw Alice's cross-signing keys (/keys/query)", () => alice2Crypto.userHasCrossSigningKeys(aliceId, true));
await must("second device: bootstrapCrossSigning from secret storage",
  alice2Crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(aliceUser, alicePassword) }));
if (!(await alice2Crypto.isCrossSigningReady())) fail("the second device is not cross-signing ready");
await until("the second device never saw itself cross-signed (signature upload, then /keys/query)",
  async () => (await alice2Crypto.getDeviceVerificationStatus(aliceId, alice2.getDeviceId()))?.crossSigningVerified);
step("Alice's second device took the cross-signing keys from secret storage and signed itself");
await must("second device: backup key from secret storage", alice2Crypto.loadSessionBackupPrivateKeyFromSecretStorage());
await must("second device: checkKeyBackupAndEnable", alice2Crypto.checkKeyBackupAndEnable());
let restored;
await until(() => `the second device never decrypted Bob's earlier message from the backup (${failure(alice2, roomId, fromBob.event_id)})`, async () => {
  restored = await must("restoreKeyBackup", alice2Crypto.restoreKeyBackup());
  if (await decrypted(alice2, roomId, fromBob.event_id, bobText)) return true;
  await new Promise((resolve) => setTimeout(resolve, 1000)); // device 1 may still be uploading
  return false;
}, 40_000);
step(`the second device restored ${restored.imported}/${restored.total} keys from the backup and decrypted Bob's message`);

// 6. Bob sees both of Alice's devices, both signed by Alice's cross-signing keys.
const aliceDevices = [alice.getDeviceId(), alice2.getDeviceId()];
await until(`Bob never saw both of Alice's devices ${aliceDevices.join(", ")}`, async () => {
  const devices = (await bobCrypto.getUserDeviceInfo([aliceId], true)).get(aliceId);
  return aliceDevices.every((id) => devices?.has(id));
}, 30_000);
for (const id of aliceDevices) {
  const status = await bobCrypto.getDeviceVerificationStatus(aliceId, id);
  if (!status?.signedByOwner) fail(`Bob does not see Alice's device ${id} as signed by her`);
}
step(`Bob sees Alice's devices ${aliceDevices.join(", ")}, both cross-signed by her`);

// 7. Done.
for (const client of [alice, alice2, bob]) client.stopClient();
step("clients stopped");
process.stdout.write("OK\n");
process.exit(0);
