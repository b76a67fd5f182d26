// Drives the settings page in headless Chromium (Debian's /usr/bin/chromium)
// against a running Gatehouse and fake GitLab; started by the Rust test
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
const tokens = JSON.parse(env("TOKENS"));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage();
page.on("dialog", (dialog) => dialog.accept());
// Every request the page makes, and what Gatehouse answered (headers and
// body), for the checks at the end and the Rust test's secrets scan.
const requests = [];
const answers = [];
page.on("request", (request) => requests.push(request.url()));
// Requests the page's Content-Security-Policy stopped never reach "request":
// Chromium reports them on the console.
const refused = [];
page.on("console", (message) => {
  if (/Content Security Policy/i.test(message.text())) refused.push(message.text());
});
page.on("response", async (response) => {
  if (!response.url().startsWith(base)) return;
  const body = await response.text().catch(() => "");
  answers.push(JSON.stringify(response.headers()) + "\n" + body);
});
const step = (name) => console.log("step:", name);

try {
  step("asks for the API key once");
  await page.goto(base + "/");
  await page.getByLabel("Gatehouse API key").fill(env("API_KEY"));
  await page.keyboard.press("Enter");
  await page.waitForSelector("body[data-ready=true]");

  step("renders one section per connector from the manifests");
  await page.getByRole("heading", { name: "Connect using OAuth v2" }).waitFor();
  await page.getByRole("heading", { name: "Connect using Personal Access Tokens (PAT)" }).waitFor();
  await page.getByText("A PAT has access to only a single organization in GitLab. Please make sure you enter the correct PAT here.").waitFor();
  const pat = page.locator("#provider-gitlab-pat");
  assert.equal(await pat.getByLabel("GitLab Base URL").inputValue(), "https://gitlab.com");
  await page.getByRole("heading", { name: "Hostile test connector" }).waitFor();
  await page.locator("#provider-hostile-test").getByLabel("Mode").waitFor();
  const unlabelled = await page.$$eval("input", (inputs) => inputs.filter((i) => i.labels.length === 0).map((i) => i.id));
  assert.deepEqual(unlabelled, [], "every input has a label");

  step("a pasted OAuth token is verified automatically on input");
  const oauth = page.locator("#provider-gitlab-oauth");
  await oauth.getByLabel("GitLab Base URL").fill(fake);
  await oauth.getByLabel("Access Token").fill(tokens.oauth);
  await oauth.locator(".result.ok", { hasText: "Valid token for jane" }).waitFor();
  await oauth.locator(".result.ok", { hasText: "Scopes: api" }).waitFor();

  step("a wrong token shows its sentence");
  await pat.getByLabel("GitLab Base URL").fill(fake);
  await pat.getByLabel("Personal Access Token (PAT)").fill(tokens.bad);
  await pat.getByRole("button", { name: "Connect" }).click();
  await pat.locator(".result.fail", { hasText: "GitLab does not accept this token" }).waitFor();
  await pat.locator(".result.fail", { hasText: "Ensure that your Access Token or PAT is valid" }).waitFor();

  step("insufficient scope shows the missing scopes and where to change them");
  await pat.getByLabel("Personal Access Token (PAT)").fill(tokens.read_user);
  await pat.getByRole("button", { name: "Connect" }).click();
  await pat.locator(".result.fail", { hasText: "Missing scopes: api, read_api" }).waitFor();
  await pat.locator(".result.fail", { hasText: "Cross-check the permissions and scope of your tokens on GitLab" }).waitFor();

  step("a verified token says what it reaches: a group token its group");
  await pat.getByLabel("Personal Access Token (PAT)").fill(tokens.group);
  await pat.locator(".result.ok", { hasText: "This is a group token for acme" }).waitFor();
  await pat.locator(".result.ok", { hasText: "single-organization token" }).waitFor();

  step("a personal token the groups it reaches");
  await pat.getByLabel("Personal Access Token (PAT)").fill(tokens.pat);
  await pat.locator(".result.ok", { hasText: "This token reaches 2 groups: acme, tools (and 1 project)." }).waitFor();
  await page.locator("#token-kinds", { hasText: "Group access token" }).waitFor();

  step("PAT + base URL → Connect → listed as connected");
  await pat.getByLabel("Personal Access Token (PAT)").fill(tokens.pat);
  await pat.getByRole("button", { name: "Connect" }).click();
  await pat.locator(".result.ok", { hasText: "Connected as jane" }).waitFor();
  const item = page.locator("#integrations li").first();
  await item.locator(".status.connected").waitFor();
  await item.getByText("api", { exact: true }).waitFor();
  assert.equal(await pat.getByLabel("Personal Access Token (PAT)").inputValue(), "", "the token is cleared after submit");
  await item.locator("dd.reach", { hasText: "This token reaches 2 groups: acme, tools" }).waitFor();

  step("limit the connection to one group it reaches");
  await item.getByLabel("Limit this connection to").selectOption({ label: "acme" });
  const [limited] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/scope") && r.request().method() === "PUT"),
    item.getByRole("button", { name: "Save limit" }).click(),
  ]);
  assert.equal(limited.status(), 200);
  await page.locator("#integrations li").first().locator("dt:text-is('Limited to') + dd", { hasText: "acme" }).waitFor();

  step("no token in the URL, storage or the page");
  const html = await page.content();
  const storage = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  for (const token of Object.values(tokens)) {
    assert.ok(!page.url().includes(token), "token in URL");
    assert.ok(!html.includes(token), "token in the page");
    assert.ok(!storage.includes(token), "token in storage");
  }
  assert.equal(await page.evaluate(() => localStorage.length), 0, "nothing in localStorage");

  step("verify now checks again");
  const lastCheck = () => item.locator("dt:text-is('Last check') + dd").textContent();
  const checkedBefore = await lastCheck();
  await page.waitForTimeout(1100); // the check time has a resolution of one second
  const [verified] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/verify") && r.request().method() === "POST"),
    item.getByRole("button", { name: "Verify now" }).click(),
  ]);
  assert.equal(verified.status(), 200);
  await page.waitForFunction(
    (before) => [...document.querySelectorAll("#integrations li dt")].some((dt) => dt.textContent === "Last check" && dt.nextElementSibling.textContent !== before),
    checkedBefore,
  );
  await page.locator("#integrations li .status.connected").waitFor();

  step("replace token");
  const hint = () => page.locator("#integrations li").first().locator("dt:text-is('Token') + dd").textContent();
  assert.equal(await hint(), "…" + tokens.pat.slice(-4));
  const listed = page.locator("#integrations li").first();
  await listed.getByRole("button", { name: "Replace token" }).click();
  const replaceForm = listed.getByRole("form", { name: "Replace token" });
  await replaceForm.getByLabel("Personal Access Token (PAT)").fill(tokens.pat2);
  const [replaced] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/credentials") && r.request().method() === "PUT"),
    replaceForm.getByRole("button", { name: "Save new token" }).click(),
  ]);
  assert.equal(replaced.status(), 200);
  await page.waitForFunction(
    (want) => [...document.querySelectorAll("#integrations li dt")].some((dt) => dt.textContent === "Token" && dt.nextElementSibling.textContent === want),
    "…" + tokens.pat2.slice(-4),
  );
  assert.ok(!(await page.content()).includes(tokens.pat2), "the new token is not in the page");

  step("regenerate the token at GitLab");
  const hintBefore = await hint();
  const [regenerated] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/rotate") && r.request().method() === "POST"),
    page.locator("#integrations li").first().getByRole("button", { name: "Regenerate token" }).click(),
  ]);
  assert.equal(regenerated.status(), 200);
  await page.locator("#integrations li").first().locator(".result.ok", { hasText: "Token regenerated" }).waitFor();
  assert.notEqual(await hint(), hintBefore, "a new token is stored");
  await page.locator("#integrations li").first().locator(".status.connected").waitFor();

  step("disconnect");
  await page.locator("#integrations li").first().getByRole("button", { name: "Disconnect" }).click();
  await page.locator("#no-integrations").waitFor({ state: "visible" });

  step("connect through OAuth (redirect flow with the fake GitLab)");
  const oauthSection = page.locator("#provider-gitlab-oauth");
  await oauthSection.getByLabel("GitLab Base URL").fill(fake);
  await oauthSection.getByRole("button", { name: "Connect with GitLab" }).click();
  await page.locator("#oauth-banner", { hasText: "Connected through OAuth" }).waitFor();
  const connectedItem = page.locator("#integrations li").first();
  await connectedItem.locator(".status.connected").waitFor();
  await connectedItem.locator("dd", { hasText: "automatic" }).waitFor();
  assert.ok(!page.url().includes("code="), "no code left in the URL");

  step("no request left loopback: only Gatehouse and the fake GitLab");
  const foreign = requests.filter((url) => !url.startsWith(base + "/") && !url.startsWith(fake + "/"));
  assert.deepEqual(foreign, [], "requests to other places");
  assert.deepEqual(refused, [], "requests the Content-Security-Policy refused");
  assert.ok(requests.some((url) => url.startsWith(base + "/api/v1/integrations")), "the page used the API");
  writeFileSync(env("TRAFFIC"), answers.join("\n"));
  console.log("browser test passed");
} finally {
  await browser.close();
}
