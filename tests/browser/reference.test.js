// The API reference (/docs/api) in a real browser (Debian's Chromium, headless, driven by
// puppeteer-core) against the server binary built by `cargo build` (target/debug/collabkit,
// or $COLLABKIT_BIN): the page builds itself from the OpenAPI document the server serves
// (/v1/openapi.json) under its Content-Security-Policy, shows every operation with its
// parameters, body fields and responses, links each from the contents, and logs no error.
// A second test feeds it a hostile document: its text stays text, and `$ref` cycles end.
// Screenshots go to ./artifacts (git ignores it).

import { join } from "node:path";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { artifacts, launchBrowser, startServer } from "./server.js";

/// How long the page may take to fetch and render the document.
const RENDERED_WITHIN_MS = 10000;
const METHODS = ["get", "post", "put", "patch", "delete", "head", "options", "trace"];

let server;
let base;
let browser;

before(async () => {
  server = await startServer({ prefix: "collabkit-reference-" });
  ({ base } = server);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  server?.stop();
});

/// A page that records what would show in the browser's console as a problem: errors, failed
/// requests and answers over 399. The favicon is the one exception: the server has none, and
/// the browser asks for it by itself.
async function watchedPage() {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  const problems = [];
  const isFavicon = (url) => new URL(url, base).pathname === "/favicon.ico";
  page.on("console", (message) => {
    if (message.type() === "error" && !isFavicon(message.location()?.url ?? "")) {
      problems.push(`console: ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("requestfailed", (request) => problems.push(`request failed: ${request.url()}`));
  page.on("response", (response) => {
    if (response.status() >= 400 && !isFavicon(response.url())) problems.push(`${response.status()} ${response.url()}`);
  });
  return { page, problems };
}

async function openReference(page, hash = "") {
  const response = await page.goto(`${base}/docs/api${hash}`);
  await page.waitForSelector('#main:is([data-state="ready"], [data-state="error"])', { timeout: RENDERED_WITHIN_MS });
  const state = await page.$eval("#main", (main) => main.dataset.state);
  const status = await page.$eval("#main", (main) => main.querySelector("#status")?.textContent ?? "");
  assert.equal(state, "ready", `the page did not render: ${status}`);
  return response;
}

function operationSelector(method, path) {
  return `section.operation[data-method="${method}"][data-path="${path}"]`;
}

test("the reference shows every operation of the served document, under a strict policy", async () => {
  const { page, problems } = await watchedPage();
  const response = await openReference(page);

  // Served as HTML under a policy that runs no inline script and loads nothing from elsewhere.
  assert.match(response.headers()["content-type"] ?? "", /^text\/html/);
  const policy = response.headers()["content-security-policy"] ?? "";
  assert.match(policy, /default-src '(self|none)'/, `policy: ${policy}`);
  assert.doesNotMatch(policy, /unsafe-inline|unsafe-eval|\*/, `policy: ${policy}`);
  assert.equal(await page.$$eval("script", (scripts) => scripts.filter((s) => !s.src).length), 0, "no inline script");

  // The page shows exactly the document's operations.
  const spec = await (await fetch(`${base}/v1/openapi.json`)).json();
  const expected = [];
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const method of METHODS) if (item[method]) expected.push(`${method.toUpperCase()} ${path}`);
  }
  const shown = await page.$$eval("section.operation", (sections) => sections.map((s) => `${s.dataset.method} ${s.dataset.path}`));
  assert.deepEqual([...shown].sort(), [...expected].sort());
  assert.equal(await page.$eval("h1", (h) => h.textContent), spec.info.title);

  // Creating a room: its heading, its required `name` body field, and every response the
  // document gives it, by status.
  const createRoom = operationSelector("POST", "/v1/accounts/{accountId}/rooms");
  const heading = await page.$eval(`${createRoom} h3`, (h) => h.textContent);
  assert.match(heading, /^POST \/v1\/accounts\/\{accountId\}\/rooms/);
  const fields = await page.$$eval(`${createRoom} .request-body li.field > .field-head`, (heads) =>
    heads.map((head) => ({ name: head.querySelector("code.name").textContent, required: !!head.querySelector(".required") })));
  assert.deepEqual(fields.find((field) => field.name === "name"), { name: "name", required: true });
  const statuses = await page.$$eval(`${createRoom} details.response`, (all) => all.map((d) => d.dataset.status));
  assert.deepEqual(statuses, Object.keys(spec.paths["/v1/accounts/{accountId}/rooms"].post.responses).sort());
  assert.ok(statuses.includes("201"));
  // A room that does not exist: 404, with the error envelope's fields.
  const getRoom = operationSelector("GET", "/v1/accounts/{accountId}/rooms/{roomId}");
  const notFound = `${getRoom} details.response[data-status="404"]`;
  assert.match(await page.$eval(`${notFound} > summary`, (s) => s.textContent), /^404/);
  const errorFields = await page.$$eval(`${notFound} code.name`, (names) => names.map((n) => n.textContent));
  for (const name of ["success", "error", "code", "requestId"]) assert.ok(errorFields.includes(name), `404 lacks ${name}`);
  // Its parameters, with where they go.
  const parameters = await page.$$eval(`${getRoom} table.params tbody tr`, (rows) => rows.map((row) => `${row.dataset.param} ${row.cells[1].textContent}`));
  assert.ok(parameters.includes("accountId path") && parameters.includes("roomId path"), parameters.join(", "));

  // Authentication, the envelope and the error codes come from the components.
  assert.match(await page.$eval("#authentication", (s) => s.textContent), /bearer/);
  const errorCodes = await page.$$eval("#envelope code", (codes) => codes.map((c) => c.textContent));
  assert.ok(errorCodes.some((code) => code.includes("NOT_FOUND")), "the error codes are listed");
  await page.screenshot({ path: join(artifacts, "reference-01-top.png") });

  // The contents link to each operation, and a link's target is on the page.
  const link = await page.$eval(`nav#toc a[href="#${await page.$eval(createRoom, (s) => s.id)}"]`, (a) => a.getAttribute("href"));
  await page.click(`nav#toc a[href="${link}"]`);
  await page.waitForFunction((hash) => location.hash === hash, {}, link);
  const top = await page.$eval(createRoom, (s) => s.getBoundingClientRect().top);
  assert.ok(Math.abs(top) < 50, `the operation is at the top of the window (${top})`);
  await page.screenshot({ path: join(artifacts, "reference-02-create-room.png") });
  // A shared link scrolls to its operation once the page has built it.
  const { page: linked, problems: linkedProblems } = await watchedPage();
  await openReference(linked, link);
  const linkedTop = await linked.$eval(createRoom, (s) => s.getBoundingClientRect().top);
  assert.ok(Math.abs(linkedTop) < 50, `a shared link shows its operation (${linkedTop})`);

  assert.deepEqual([...problems, ...linkedProblems], []);
});

test("the document's text stays text, and recursive schemas end", async () => {
  const { page, problems } = await watchedPage();
  const hostile = "<img src=x onerror=\"document.body.dataset.owned='yes'\"><b>bold</b>";
  const node = { type: "object", properties: { name: { type: "string" }, children: { type: "array", items: { $ref: "#/components/schemas/Node" } } } };
  const spec = {
    openapi: "3.1.0",
    info: { title: `Hostile ${hostile}`, version: "1", description: `Intro ${hostile} [a link](javascript:alert(1))` },
    paths: {
      "/things/{id}": {
        post: {
          tags: ["<script>alert(1)</script>"],
          summary: hostile,
          parameters: [{ name: "id", in: "path", required: true, description: hostile, schema: { type: "string" } }],
          requestBody: { content: { "application/json": { schema: { $ref: "#/components/schemas/Node" } } } },
          responses: { 200: { description: hostile, content: { "application/json": { schema: { $ref: "#/components/schemas/Loop" }, example: { html: hostile } } } } },
        },
      },
    },
    components: {
      schemas: {
        Node: node,
        Loop: { $ref: "#/components/schemas/Loop2" },
        Loop2: { allOf: [{ $ref: "#/components/schemas/Loop" }, { type: "object", properties: { [hostile]: { type: "string" } } }] },
      },
    },
  };
  await page.setRequestInterception(true);
  page.on("request", (request) => {
    if (new URL(request.url()).pathname === "/v1/openapi.json") {
      request.respond({ status: 200, contentType: "application/json", body: JSON.stringify(spec) });
    } else {
      request.continue();
    }
  });
  await openReference(page);

  assert.equal(await page.$("main img, main b, main script, main a[href^='javascript']"), null, "no element from the document's text");
  assert.equal(await page.evaluate(() => document.body.dataset.owned), undefined);
  assert.equal(await page.$eval("h1", (h) => h.textContent), `Hostile ${hostile}`);
  assert.ok((await page.$eval("main", (m) => m.textContent)).includes(hostile));
  // The recursive Node is expanded once, then named.
  const body = await page.$eval(`${operationSelector("POST", "/things/{id}")} .request-body`, (b) => b.textContent);
  assert.match(body, /Recursive: Node again/);
  await page.screenshot({ path: join(artifacts, "reference-03-hostile.png"), fullPage: true });
  assert.deepEqual(problems, []);
});
