// The dashboard in a real browser (Debian's Chromium, headless, driven by puppeteer-core)
// against the server binary built by `cargo build` (target/debug/collabkit, or
// $COLLABKIT_BIN): a new person's path from sign-up to live users on the charts, a file a
// user's browser uploads with its JWT, a viewer who cannot write, and a revoked key. Screenshots go to ./artifacts (git ignores it).

import { join } from "node:path";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import WebSocket from "ws";

import { artifacts, launchBrowser, startServer, waitUntil } from "./server.js";

const PASSWORD = "correct horse battery";
/// How long the page may take to show a change that happened on the server.
const LIVE_WITHIN_MS = 1000;

let server;
let base;
let browser;

before(async () => {
  // Analytics counters are written every 10 s by default; every half second, the charts get
  // their points well within the test's wait for them.
  server = await startServer({ prefix: "collabkit-browser-", env: { COLLABKIT_ANALYTICS_FLUSH_INTERVAL_MS: "500" } });
  ({ base } = server);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  server?.stop();
});

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

async function submit(page, selector) {
  await Promise.all([page.waitForNavigation(), page.click(selector)]);
}

/// A user's socket, following docs/protocol.md: auth, then room.join.
function joinRoom(jwt) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${base.replace("http", "ws")}/v1/realtime`, "collabkit.v1");
    let next = 0;
    const waiting = new Map();
    socket.request = (method, params) =>
      new Promise((done, fail) => {
        next += 1;
        waiting.set(next, { done, fail });
        socket.send(JSON.stringify({ type: "req", id: next, method, params }));
      });
    socket.on("message", (data) => {
      const frame = JSON.parse(data.toString());
      if (frame.type === "res" && waiting.has(frame.id)) {
        const { done, fail } = waiting.get(frame.id);
        waiting.delete(frame.id);
        frame.ok ? done(frame.result) : fail(new Error(JSON.stringify(frame.error)));
      } else if (frame.type === "authFailed") {
        reject(new Error("auth failed"));
      } else if (frame.type === "welcome" || frame.event === "welcome") {
        socket.request("room.join", {}).then(() => resolve(socket), reject);
      }
    });
    socket.on("open", () => socket.send(JSON.stringify({ type: "auth", token: jwt, protocol: 1 })));
    socket.on("error", reject);
  });
}

test("a new person signs up, gets a key, sees live users, invites a viewer and revokes the key", async () => {
  const owner = await browser.newPage();
  await owner.setViewport({ width: 1280, height: 800 });
  owner.on("dialog", (dialog) => dialog.accept());

  // `/` leads to the dashboard, which asks to log in; sign-up is one link away.
  await owner.goto(`${base}/`);
  assert.match(owner.url(), /\/dashboard\/login$/);
  await submit(owner, 'a[href="/dashboard/signup"]');
  // Keyboard only: the fields are labelled and reachable with Tab.
  await owner.focus("#email");
  await owner.keyboard.type("ada@example.com");
  await owner.keyboard.press("Tab");
  await owner.keyboard.type(PASSWORD);
  await owner.keyboard.press("Tab");
  await owner.keyboard.type("<b>Acme</b> & Co");
  await Promise.all([owner.waitForNavigation(), owner.keyboard.press("Enter")]);

  // Settings: the Account ID and the key, shown once.
  const accountId = await owner.$eval("#account-id", (e) => e.value);
  const apiKey = await owner.$eval("#new-key", (e) => e.value);
  assert.match(accountId, /^[0-9a-f-]{36}$/);
  assert.match(apiKey, /^ck_/);
  assert.equal(await owner.$eval(".org", (e) => e.textContent), "<b>Acme</b> & Co", "escaped, shown as text");
  await shot(owner, "01-settings-after-signup");

  // The key works with the REST API, built the documented way.
  const token = Buffer.from(`${accountId}:${apiKey}`).toString("base64");
  const rest = (path, init = {}) =>
    fetch(`${base}/v1/accounts/${accountId}${path}`, {
      ...init,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...(init.headers ?? {}) },
    });
  assert.equal((await rest("/rooms")).status, 200);

  // A room and two users, from the dashboard.
  await owner.goto(`${base}/dashboard/rooms`);
  await owner.type("#room-name", "Design review");
  await submit(owner, 'form[method="post"][action="/dashboard/rooms"] button');
  const roomId = await owner.$eval("#room-id", (e) => e.textContent);
  const jwts = [];
  for (const name of ["Alice", "Bob"]) {
    await owner.type("#user-name", name);
    await submit(owner, "#create-user");
    jwts.push(await owner.$eval("#user-jwt", (e) => e.value));
  }
  assert.equal(jwts.length, 2);
  await shot(owner, "02-room-with-new-user");

  // Two clients connect: the room page shows them online within a moment, live.
  await owner.goto(`${base}/dashboard/rooms/${roomId}`);
  const online = `.online[data-room="${roomId}"]`;
  assert.equal(await owner.$eval(online, (e) => e.textContent), "0");
  const alice = await joinRoom(jwts[0]);
  const bob = await joinRoom(jwts[1]);
  const joinedAt = Date.now();
  await owner.waitForFunction((s) => document.querySelector(s)?.textContent === "2", { timeout: LIVE_WITHIN_MS }, online);
  console.log(`room page showed 2 online ${Date.now() - joinedAt} ms after the joins`);
  await alice.request("broadcast", { event: "wave", data: {} });
  await bob.request("presence.update", { state: { cursor: { x: 1, y: 2 } } });
  await shot(owner, "03-room-two-online");

  // A user's browser uploads a file with the user's JWT (as client.storage does): the room
  // page lists it, and its public URL serves the bytes.
  const uploaded = await owner.evaluate(async (id, jwt) => {
    const form = new FormData();
    form.append("file", new File(["hello from the browser"], "greeting.txt", { type: "text/plain" }));
    const response = await fetch(`/v1/accounts/${id}/upload`, {
      method: "POST",
      headers: { Authorization: `Bearer ${jwt}` },
      body: form,
    });
    return { status: response.status, body: await response.json() };
  }, accountId, jwts[0]);
  assert.equal(uploaded.status, 201, JSON.stringify(uploaded.body));
  const fileKey = uploaded.body.data.file.key;
  await owner.goto(`${base}/dashboard/rooms/${roomId}`);
  assert.equal(await owner.$eval(`tr[data-file="${fileKey}"] a`, (e) => e.textContent), "greeting.txt");
  const served = await fetch(`${base}/v1/accounts/${accountId}/storage/${fileKey}`);
  assert.equal(served.status, 200);
  assert.equal(await served.text(), "hello from the browser");
  await shot(owner, "03b-room-files");

  // The rooms list shows it too; so does a phone-sized screen.
  await owner.goto(`${base}/dashboard/rooms`);
  await owner.waitForFunction((s) => document.querySelector(s)?.textContent === "2", { timeout: LIVE_WITHIN_MS }, online);
  await owner.setViewport({ width: 390, height: 844 });
  await shot(owner, "04-rooms-phone");
  await owner.setViewport({ width: 1280, height: 800 });

  // The analytics chart has data points.
  await waitUntil(async () => {
    await owner.goto(`${base}/dashboard/analytics?room=${roomId}`);
    return (await owner.$$("svg .point")).length >= 3;
  }, 10000, "points on the charts");
  await shot(owner, "05-analytics");

  // Invite a viewer; the link signs them up into this organization.
  await owner.goto(`${base}/dashboard/settings`);
  await owner.select("#invite-role", "viewer");
  await submit(owner, 'form[action="/dashboard/settings/invitations"] button');
  const link = await owner.$eval("#invite-link", (e) => e.value);
  const viewerContext = await browser.createBrowserContext();
  const viewer = await viewerContext.newPage();
  await viewer.setViewport({ width: 1280, height: 800 });
  await viewer.goto(link);
  await viewer.type("#new-email", "viewer@example.com");
  await viewer.type("#new-password", PASSWORD);
  await submit(viewer, 'input[value="signup"] ~ button');
  await viewer.goto(`${base}/dashboard/rooms/${roomId}`);
  assert.equal(await viewer.$("#create-user"), null, "a viewer has no write button");
  assert.equal(await viewer.$eval(online, (e) => e.textContent), "2");
  await shot(viewer, "06-viewer-room");
  // A forged write from the viewer's page, with its cookie and even its CSRF token: 403.
  const forged = await viewer.evaluate(async (id) => {
    const csrf = document.body.dataset.csrf;
    const response = await fetch(`/v1/accounts/${id}/rooms`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ name: "forged" }),
    });
    return { status: response.status, body: await response.json() };
  }, accountId);
  assert.equal(forged.status, 403);
  assert.equal(forged.body.error.code, "FORBIDDEN");
  assert.match(forged.body.error.message, /Viewers/);

  // Revoke the key: the REST API refuses it.
  await owner.goto(`${base}/dashboard/settings`);
  await submit(owner, 'form[action$="/revoke"] button');
  await shot(owner, "07-key-revoked");
  const refused = await rest("/rooms");
  assert.equal(refused.status, 401);
  assert.equal((await refused.json()).error.code, "UNAUTHORIZED");

  alice.close();
  bob.close();
  await viewerContext.close();
});
