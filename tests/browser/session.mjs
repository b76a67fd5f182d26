// Drives the settings page opened from a connect session's URL in headless
// Chromium: top-level (connect, OAuth back to the session's page), framed
// by an allowed origin (works, posts its events to the parent) and by a
// disallowed one (the browser refuses to show it). Started by the Rust test
// tests/e2e/browser.rs, which passes everything through the environment.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env("GATEHOUSE_URL");
const fake = env("FAKE_URL");
const sessionUrl = env("SESSION_URL");
const allowed = env("ALLOWED_PARENT");
const denied = env("DENIED_PARENT");
const tokens = JSON.parse(env("TOKENS"));
const sessionToken = new URLSearchParams(new URL(sessionUrl).hash.slice(1)).get("session");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext();
const answers = [];
const sent = [];
context.on("request", (request) => {
  if (!request.url().startsWith(base)) return;
  sent.push({ url: request.url(), headers: request.headers() });
});
context.on("response", async (response) => {
  if (!response.url().startsWith(base)) return;
  const body = await response.text().catch(() => "");
  answers.push(JSON.stringify(response.headers()) + "\n" + body);
});
const step = (name) => console.log("step:", name);

try {
  const page = await context.newPage();
  page.on("dialog", (dialog) => dialog.accept());

  step("the session's URL opens the page with no API key");
  await page.goto(sessionUrl);
  await page.waitForSelector("body[data-ready=true]");
  assert.ok(await page.locator("#login").isHidden(), "no API key is asked for");
  assert.ok(!page.url().includes("session="), "the token is removed from the address");
  assert.ok(await page.locator("#no-integrations").isVisible(), "another end user's connection is not shown");

  step("connect a PAT for the session's end user");
  const pat = page.locator("#provider-gitlab-pat");
  await pat.getByLabel("GitLab Base URL").fill(fake);
  await pat.getByLabel("Personal Access Token (PAT)").fill(tokens.pat);
  await pat.getByRole("button", { name: "Connect" }).click();
  await pat.locator(".result.ok", { hasText: "Connected as alice" }).waitFor();
  await page.locator("#integrations li .status.connected").waitFor();
  assert.equal(await page.locator("#integrations li").count(), 1);

  step("OAuth from the session lands back on the session's page");
  const oauth = page.locator("#provider-gitlab-oauth");
  await oauth.getByLabel("GitLab Base URL").fill(fake);
  await oauth.getByRole("button", { name: "Connect with GitLab" }).click();
  await page.locator("#oauth-banner", { hasText: "Connected through OAuth" }).waitFor();
  assert.equal(new URL(page.url()).pathname, "/settings");
  assert.ok(!page.url().includes("code="), "no code left in the URL");
  await page.locator("#integrations li").nth(1).waitFor();

  step("every API request carried the session, never an API key");
  const api = sent.filter((r) => new URL(r.url).pathname.startsWith("/api/v1/") && !r.url.includes("/callback"));
  assert.ok(api.length > 3, "the page used the API");
  for (const r of api) assert.equal(r.headers.authorization, "Bearer " + sessionToken, r.url);
  for (const r of sent) assert.ok(!r.url.includes(sessionToken), "the token is never in a URL sent: " + r.url);

  step("framed by an allowed origin: works and posts its events");
  const framed = await context.newPage();
  framed.on("dialog", (dialog) => dialog.accept());
  await framed.goto(`${allowed}/?src=${encodeURIComponent(sessionUrl)}`);
  const frame = framed.frameLocator("#gatehouse");
  await frame.locator("body[data-ready=true]").waitFor();
  const events = () => framed.evaluate(() => window.events);
  const waitEvent = async (type) => {
    await framed.waitForFunction((t) => window.events.some((e) => e.data.type === t), type);
    return (await events()).find((e) => e.data.type === type);
  };
  const item = frame.locator("#integrations li").first();
  await item.getByRole("button", { name: "Verify now" }).click();
  const verified = await waitEvent("verified");
  assert.equal(verified.origin, base, "the event comes from Gatehouse");
  assert.equal(verified.data.source, "gatehouse");
  assert.ok(verified.data.integration_id && verified.data.provider, JSON.stringify(verified.data));
  const fpat = frame.locator("#provider-gitlab-pat");
  await fpat.getByLabel("GitLab Base URL").fill(fake);
  await fpat.getByLabel("Personal Access Token (PAT)").fill(tokens.bad);
  await fpat.getByRole("button", { name: "Connect" }).click();
  const failed = await waitEvent("failed");
  assert.equal(failed.data.code, "invalid_token");
  await fpat.getByLabel("Personal Access Token (PAT)").fill(tokens.pat2);
  await fpat.getByRole("button", { name: "Connect" }).click();
  const connected = await waitEvent("connected");
  assert.equal(connected.data.provider, "gitlab-pat");
  await frame.locator("#integrations li").first().getByRole("button", { name: "Disconnect" }).click();
  const disconnected = await waitEvent("disconnected");
  assert.ok(disconnected.data.integration_id);
  step("OAuth from the framed page runs in a window of its own and reports back");
  const foauth = frame.locator("#provider-gitlab-oauth");
  await foauth.getByLabel("GitLab Base URL").fill(fake);
  const seen = (await events()).length;
  await foauth.getByRole("button", { name: "Connect with GitLab" }).click();
  await framed.waitForFunction(
    (n) => window.events.slice(n).some((e) => e.data.type === "connected" && e.data.provider === "gitlab-oauth"), seen);
  await frame.locator("#oauth-banner", { hasText: "Connected through OAuth" }).waitFor();
  await frame.getByRole("button", { name: "Done" }).click();
  await waitEvent("closed");

  step("a disallowed origin cannot frame the page");
  const foreign = await context.newPage();
  const refused = [];
  foreign.on("console", (m) => { if (/frame-ancestors|Refused to frame/i.test(m.text())) refused.push(m.text()); });
  await foreign.goto(`${denied}/?src=${encodeURIComponent(sessionUrl)}`);
  await foreign.waitForTimeout(2000);
  const shown = await Promise.all(foreign.frames().map((f) => f.$("body[data-ready=true]").then((e) => e !== null).catch(() => false)));
  assert.ok(!shown.includes(true), "the page rendered inside a disallowed parent");
  assert.deepEqual(await foreign.evaluate(() => window.events), [], "no event reached a disallowed parent");
  assert.ok(refused.length > 0, "Chromium reports the refusal");

  writeFileSync(env("TRAFFIC"), answers.join("\n"));
  console.log("session browser test passed");
} finally {
  await browser.close();
}
