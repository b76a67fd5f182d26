// The integrations settings page. Everything it shows comes from the
// providers' manifests and the API; it holds the API key (or a connect
// session's token) in sessionStorage only and never writes a provider's
// token into the URL, storage or the page.
//
// Opened from a connect session's URL (/settings#session=…) it takes the
// token from the fragment (never sent to a server), removes it from the
// address, and manages that end user's connections only. Framed by an
// origin the operator allows, it tells the parent what happened through
// postMessage, addressed to those origins only.
"use strict";

const KEY = "gatehouse-api-key";
const SESSION = "gatehouse-session";
// Set in the window a framed page opened for OAuth.
const POPUP = "gatehouse-oauth-window";
const $ = (sel) => document.querySelector(sel);
let providers = [];

// --- connect sessions -------------------------------------------------------
function takeSessionFromFragment() {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const token = fragment.get("session");
  if (token) {
    sessionStorage.setItem(SESSION, token);
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
}

function sessionMode() {
  return sessionStorage.getItem(SESSION) !== null;
}

function credential() {
  return sessionStorage.getItem(SESSION) || sessionStorage.getItem(KEY);
}

// --- events for the embedding page ------------------------------------------
const parentOrigins = (document.querySelector('meta[name="gatehouse-parent-origins"]')?.content || "")
  .split(" ").filter(Boolean);

// {type: connected|verified|failed|disconnected|closed, integration_id, provider, …}
// to window.parent, addressed to each allowed origin (never "*"): the
// browser delivers it only when the parent is one of them.
function notify(type, details = {}) {
  if (window.parent === window) return;
  const message = { source: "gatehouse", type, ...details };
  for (const origin of parentOrigins) window.parent.postMessage(message, origin);
}

function closeSession(reason) {
  sessionStorage.removeItem(SESSION);
  notify("closed", reason ? { reason } : {});
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + credential() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (res.status === 401 && sessionMode()) {
    showEnded((data && data.detail) || "This session has ended.");
    closeSession(data && data.code);
    throw new Error("unauthorized");
  }
  if (res.status === 401) {
    sessionStorage.removeItem(KEY);
    showLogin("The API key was not accepted.");
    throw new Error("unauthorized");
  }
  return { status: res.status, data };
}

function showEnded(message) {
  $("#login").hidden = true;
  $("#connected").hidden = true;
  $("#tips").hidden = true;
  $("#providers").replaceChildren();
  const banner = $("#session-ended");
  banner.textContent = message;
  banner.hidden = false;
}

function showLogin(message) {
  $("#login").hidden = false;
  $("#connected").hidden = true;
  $("#tips").hidden = true;
  $("#providers").replaceChildren();
  $("#login-error").textContent = message || "";
  $("#api-key").focus();
}

// Sentences from the product page's troubleshooting, picked by error code.
function troubleshooting(problem, provider) {
  const vendor = provider ? provider.vendor : "the provider";
  switch (problem.code) {
    case "invalid_token": case "token_expired": case "token_revoked":
      return [`Ensure that your Access Token or PAT is valid. If issues persist, try regenerating your token on ${vendor} and attempting the integration again.`];
    case "insufficient_scope": {
      const needed = provider ? provider.required_scopes.join(provider.required_scopes_rule === "any_of" ? " or " : " and ") : "";
      return [`Missing scopes: ${(problem.missing_scopes || []).join(", ")}.`,
        `Cross-check the permissions and scope of your tokens on ${vendor} to ensure alignment with system prerequisites${needed ? ` (needs ${needed})` : ""}.`];
    }
    default:
      return ["If issues persist, don't hesitate to contact support for specialized assistance."];
  }
}

function showResult(box, ok, lines) {
  box.className = "result " + (ok ? "ok" : "fail");
  box.replaceChildren(...lines.map((l) => el("p", { text: l })));
  box.hidden = false;
}

function describeVerification(v) {
  const lines = [`Valid token for ${v.account.username}${v.account.name ? ` (${v.account.name})` : ""}.`];
  if (v.scopes.length) lines.push(`Scopes: ${v.scopes.join(", ")}.`);
  lines.push(v.expires_at ? `Expires: ${v.expires_at}.` : "Does not expire.");
  // What the token reaches turns the "single organization" note into
  // something the user can check before connecting.
  if (v.reach) lines.push(v.reach.summary, v.reach.note);
  return lines;
}

// The connector's sentence, then the host's advice (a field of its own).
function problemLines(problem, provider) {
  return [problem.detail, ...(problem.advice ? [problem.advice] : []), ...troubleshooting(problem, provider)];
}

function collect(form, provider, onlySecrets) {
  const credentials = {};
  for (const f of provider.fields) {
    if (onlySecrets && f.kind !== "secret") continue;
    const input = form.querySelector(`[name="${f.key}"]`);
    if (input && input.value.trim() !== "") credentials[f.key] = input.value.trim();
  }
  return credentials;
}

function fieldInputs(provider, prefix, onlySecrets) {
  return provider.fields
    .filter((f) => !onlySecrets || f.kind === "secret")
    .map((f) => {
      const id = `${prefix}-${f.key}`;
      const input = el("input", {
        id, name: f.key, required: f.required && !(f.kind === "url" && f.default),
        type: f.kind === "secret" ? "password" : f.kind === "url" ? "url" : "text",
        autocomplete: "off", spellcheck: "false",
        placeholder: f.placeholder || undefined,
        "aria-describedby": f.help ? id + "-help" : undefined,
      });
      if (f.kind !== "secret" && f.default) input.value = f.default;
      return el("div", {}, el("label", { for: id, text: f.label }), input,
        f.help ? el("p", { id: id + "-help", class: "help", text: f.help }) : null);
    });
}

function renderProvider(provider) {
  const result = el("div", { class: "result", role: "status", "aria-live": "polite", hidden: true });
  const form = el("form", { "aria-label": provider.name }, ...fieldInputs(provider, provider.id, false),
    el("button", { type: "submit", text: "Connect" }), result);
  let seq = 0, timer;
  const complete = () => provider.fields.every((f) => !f.required || f.default || form.querySelector(`[name="${f.key}"]`).value.trim());
  // Verify on input, debounced: the product page promises it for tokens.
  form.addEventListener("input", () => {
    clearTimeout(timer);
    if (!complete()) { result.hidden = true; return; }
    timer = setTimeout(async () => {
      const mine = ++seq;
      showResult(result, true, ["Verifying…"]);
      const { status, data } = await api("POST", `/api/v1/providers/${provider.id}/verify`, { credentials: collect(form, provider) });
      if (mine !== seq) return;
      if (status === 200 && data.valid) showResult(result, true, describeVerification(data));
      else showResult(result, false, problemLines(status === 200 ? data.error : data, provider));
    }, 600);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearTimeout(timer);
    seq++;
    const credentials = collect(form, provider);
    for (const f of provider.fields) if (f.kind === "secret") form.querySelector(`[name="${f.key}"]`).value = "";
    showResult(result, true, ["Connecting…"]);
    const { status, data } = await api("POST", "/api/v1/integrations", { provider: provider.id, credentials });
    if (status === 200 || status === 201) {
      showResult(result, true, [`Connected as ${data.account.username}.`]);
      notify("connected", { integration_id: data.id, provider: provider.id });
      await loadIntegrations();
    } else {
      showResult(result, false, problemLines(data, provider));
      notify("failed", { provider: provider.id, code: data && data.code });
    }
  });
  return el("section", { class: "card", id: "provider-" + provider.id, "aria-labelledby": provider.id + "-title" },
    el("h2", { id: provider.id + "-title", text: provider.name }),
    el("p", { class: "muted", text: provider.description }),
    ...provider.notes.map((n) => el("p", { class: "note", role: "note", text: n })),
    provider.oauth ? oauthStart(provider, form) : null,
    form);
}

// The OAuth redirect flow: the API answers the provider's authorization URL
// (redirect=false, since a navigation cannot carry the API key) and the
// browser goes there; the provider comes back to the callback, which
// returns here with ?connected=<id>.
function oauthStart(provider, form) {
  const result = el("div", { class: "result", role: "status", "aria-live": "polite", hidden: true });
  const button = el("button", { type: "button", text: `Connect with ${provider.vendor}`, onclick: async () => {
    const urlField = form.querySelector(`[name="${provider.oauth.url_field}"]`);
    const baseUrl = (urlField && urlField.value.trim()) || "";
    if (window.parent !== window) {
      // Providers refuse to be framed, and a framed page's cookies may be
      // blocked: the flow runs in a window of its own (see startInPopup).
      openOAuthWindow(provider, baseUrl);
      showResult(result, true, [`Continue in the ${provider.vendor} window.`]);
      return;
    }
    showResult(result, true, [`Opening ${provider.vendor}…`]);
    const failed = await startAuthorization(provider.id, baseUrl);
    if (failed) {
      showResult(result, false, problemLines(failed, provider));
      notify("failed", { provider: provider.id, code: failed.code });
    }
  } });
  return el("div", { class: "oauth" }, button,
    el("p", { class: "help", text: `Authorize in ${provider.vendor} (scopes: ${provider.oauth.scopes.join(", ")}); Gatehouse refreshes the token before it expires. Uses the base URL below.` }),
    result);
}

// The scope chooser: one of the top-level groups the token reaches, or
// everything it reaches.
function scopeForm(i, result, provider) {
  const choices = [...(i.reach.top_level || [])];
  if (i.reach.bound_to && !choices.some((c) => c.id === i.reach.bound_to.id)) choices.push(i.reach.bound_to);
  const id = `scope-${i.id}`;
  const select = el("select", { id, name: "scope" },
    el("option", { value: "", text: "Everything the token reaches" }),
    ...choices.map((c) => el("option", { value: c.id, text: c.path, selected: i.scope && i.scope.id === c.id })));
  const form = el("form", { class: "scope", "aria-label": "Limit to one group" },
    el("label", { for: id, text: "Limit this connection to" }), select,
    el("button", { type: "submit", class: "secondary", text: "Save limit" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { status, data } = await api("PUT", `/api/v1/integrations/${i.id}/scope`, { scope: select.value || null });
    if (status === 200) await loadIntegrations();
    else showResult(result, false, problemLines(data, provider));
  });
  return form;
}

// Asks for the provider's authorization URL (redirect=false: a navigation
// cannot carry the credential) and goes there; answers the problem if not.
async function startAuthorization(providerId, baseUrl) {
  const query = new URLSearchParams({ redirect: "false" });
  if (baseUrl) query.set("base_url", baseUrl);
  const { status, data } = await api("GET", `/api/v1/oauth/${providerId}/authorize?${query}`);
  if (status !== 200) return data || { code: "internal_error", detail: "The authorization could not start." };
  window.location.assign(data.authorize_url);
  return null;
}

// A framed page's OAuth window: it asks this page for the credential
// (same origin only), starts the flow first-party, and reports back.
function openOAuthWindow(provider, baseUrl) {
  const query = new URLSearchParams({ oauth: provider.id });
  if (baseUrl) query.set("base_url", baseUrl);
  const popup = window.open(`/settings?${query}`, "gatehouse-oauth");
  const handOver = (event) => {
    if (event.origin !== window.location.origin || event.source !== popup) return;
    if (!event.data || event.data.source !== "gatehouse-oauth-ready") return;
    window.removeEventListener("message", handOver);
    popup.postMessage({ source: "gatehouse-oauth-credential", credential: credential(), session: sessionMode() },
      window.location.origin);
  };
  window.addEventListener("message", handOver);
}

// In the OAuth window: take the credential from the page that opened it.
function startInPopup() {
  const query = new URLSearchParams(window.location.search);
  const providerId = query.get("oauth");
  if (!providerId || !window.opener) return false;
  window.addEventListener("message", async (event) => {
    if (event.origin !== window.location.origin || event.source !== window.opener) return;
    if (!event.data || event.data.source !== "gatehouse-oauth-credential") return;
    sessionStorage.setItem(event.data.session ? SESSION : KEY, event.data.credential);
    sessionStorage.setItem(POPUP, "1");
    history.replaceState(null, "", window.location.pathname);
    const failed = await startAuthorization(providerId, query.get("base_url") || "");
    if (failed) {
      window.opener.postMessage({ source: "gatehouse-oauth", search: `?failed=${failed.code}` }, window.location.origin);
      window.close();
    }
  });
  window.opener.postMessage({ source: "gatehouse-oauth-ready" }, window.location.origin);
  return true;
}

function renderIntegration(i) {
  const provider = providers.find((p) => p.id === i.provider);
  const result = el("div", { class: "result", role: "status", "aria-live": "polite", hidden: true });
  const details = el("dl", {},
    el("dt", { text: "Account" }), el("dd", { text: `${i.account.username}${i.account.email ? ` <${i.account.email}>` : ""}` }),
    el("dt", { text: "Base URL" }), el("dd", { text: i.base_url || "—" }),
    el("dt", { text: "Scopes" }), el("dd", { text: i.scopes.join(", ") || "—" }),
    el("dt", { text: "Token" }), el("dd", { text: i.token_hint ? "…" + i.token_hint : "hidden" }),
    el("dt", { text: "Expires" }), el("dd", { text: i.token_expires_at || "never" }),
    i.reach ? el("dt", { text: "Reaches" }) : null, i.reach ? el("dd", { class: "reach", text: i.reach.summary }) : null,
    i.reach ? el("dt", { text: "Limited to" }) : null,
    i.reach ? el("dd", { text: i.scope ? i.scope.path : "nothing: all the token reaches" }) : null,
    el("dt", { text: "Refresh" }), el("dd", { text: i.refreshable ? "automatic" : (i.refresh_note || "not needed") }),
    el("dt", { text: "Last check" }), el("dd", { text: i.last_verified_at || "never" }));
  const item = el("li", { "data-id": i.id, "data-provider": i.provider },
    el("h3", {}, `${provider ? provider.vendor : i.provider} · ${i.account.username}${i.label ? ` · ${i.label}` : ""} `,
      el("span", { class: "status " + i.status, text: i.status.replace("_", " ") })),
    details,
    i.reach ? el("p", { class: "help", text: i.reach.note }) : null,
    i.expiry_warning ? el("p", { class: "note", role: "note", text: i.expiry_warning }) : null,
    i.rotation_started_at ? el("p", { class: "error", text: `A token regeneration started at ${i.rotation_started_at} did not finish; if the integration stops working, replace its token.` }) : null,
    result);
  if (i.last_error) showResult(result, false, problemLines(i.last_error, provider));
  const replace = provider ? el("form", { hidden: true, "aria-label": "Replace token" },
    ...fieldInputs(provider, "replace-" + i.id, true), el("button", { type: "submit", text: "Save new token" })) : null;
  if (replace) replace.addEventListener("submit", async (event) => {
    event.preventDefault();
    const credentials = collect(replace, provider, true);
    replace.querySelectorAll("input").forEach((input) => { input.value = ""; });
    const { status, data } = await api("PUT", `/api/v1/integrations/${i.id}/credentials`, { credentials });
    if (status === 200) {
      notify("verified", { integration_id: i.id, provider: i.provider, status: data.status });
      await loadIntegrations();
    } else {
      showResult(result, false, problemLines(data, provider));
      notify("failed", { integration_id: i.id, provider: i.provider, code: data && data.code });
    }
  });
  item.append(
    el("button", { type: "button", class: "secondary", text: "Verify now", onclick: async () => {
      showResult(result, true, ["Verifying…"]);
      const { status, data } = await api("POST", `/api/v1/integrations/${i.id}/verify`);
      if (status === 200 && data.status === "connected") {
        notify("verified", { integration_id: i.id, provider: i.provider, status: data.status });
      } else {
        notify("failed", { integration_id: i.id, provider: i.provider, status: data && data.status,
          code: status === 200 ? data.last_error && data.last_error.code : data && data.code });
      }
      if (status === 200) await loadIntegrations();
      else showResult(result, false, problemLines(data, provider));
    } }), " ",
    el("button", { type: "button", class: "secondary", text: "Replace token", onclick: () => {
      if (replace) { replace.hidden = !replace.hidden; if (!replace.hidden) replace.querySelector("input").focus(); }
    } }), " ",
    // The provider issues a new token in place of this one and revokes
    // this one; Gatehouse stores the new one without showing it.
    i.rotatable ? el("button", { type: "button", class: "secondary", text: "Regenerate token", onclick: async () => {
      if (!confirm(`Regenerate the token of ${i.account.username}? ${provider ? provider.vendor : "The provider"} issues a new one and revokes the current one at once.`)) return;
      showResult(result, true, ["Regenerating…"]);
      const { status, data } = await api("POST", `/api/v1/integrations/${i.id}/rotate`);
      if (status === 200) {
        await loadIntegrations();
        const fresh = document.querySelector(`#integrations li[data-id="${i.id}"] .result`);
        if (fresh) showResult(fresh, true, [`Token regenerated: the new one ends in …${data.token_hint || ""} and the old one no longer works.`]);
      } else showResult(result, false, problemLines(data, provider));
    } }) : null, i.rotatable ? " " : null,
    el("button", { type: "button", class: "danger", text: "Disconnect", onclick: async () => {
      if (!confirm(`Disconnect ${i.account.username}? The stored token is erased.`)) return;
      const { status } = await api("DELETE", `/api/v1/integrations/${i.id}`);
      if (status === 204) notify("disconnected", { integration_id: i.id, provider: i.provider });
      await loadIntegrations();
    } }),
    replace,
    i.reach && (i.reach.top_level.length || i.reach.bound_to) ? scopeForm(i, result, provider) : null);
  return item;
}

async function loadIntegrations() {
  const { data } = await api("GET", "/api/v1/integrations");
  const list = data.integrations;
  $("#integrations").replaceChildren(...list.map(renderIntegration));
  $("#no-integrations").hidden = list.length > 0;
}

async function load() {
  $("#login").hidden = true;
  if (sessionMode()) {
    $("#api-docs").hidden = true;
    $("#done").hidden = window.parent === window;
  }
  const { data } = await api("GET", "/api/v1/providers");
  providers = data.providers;
  $("#providers").replaceChildren(...providers.map(renderProvider));
  $("#connected").hidden = false;
  $("#tips").hidden = false;
  await loadIntegrations();
  oauthReturn(new URLSearchParams(window.location.search));
  document.body.dataset.ready = "true";
}

// Back from the provider: ?connected=<id> or, for a session, ?failed=<code>.
function oauthReturn(query) {
  const connected = query.get("connected"), failed = query.get("failed");
  if (!connected && !failed) return;
  const banner = $("#oauth-banner");
  banner.textContent = connected ? "Connected through OAuth. The integration is listed below."
    : `The authorization did not complete (${failed}). Try again.`;
  banner.hidden = false;
  history.replaceState(null, "", window.location.pathname);
  if (connected) notify("connected", { integration_id: connected, provider: oauthProvider(connected) });
  else notify("failed", { code: failed });
}

function oauthProvider(id) {
  const item = document.querySelector(`#integrations li[data-id="${CSS.escape(id)}"]`);
  return item ? item.dataset.provider : undefined;
}

// The authorization window of a framed page came back here: hand the
// result to the page that opened it (same origin only) and close.
function relayToOpener() {
  const query = new URLSearchParams(window.location.search);
  if (!window.opener || sessionStorage.getItem(POPUP) === null) return false;
  if (!query.get("connected") && !query.get("failed")) return false;
  try {
    window.opener.postMessage({ source: "gatehouse-oauth", search: window.location.search }, window.location.origin);
  } catch (e) {
    return false;
  }
  window.close();
  return true;
}

window.addEventListener("message", async (event) => {
  if (event.origin !== window.location.origin || !event.data || event.data.source !== "gatehouse-oauth") return;
  await loadIntegrations();
  oauthReturn(new URLSearchParams(event.data.search));
});

$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("#api-key").value);
  $("#api-key").value = "";
  load().catch(() => {});
});

$("#done").addEventListener("click", () => {
  closeSession("done");
  showEnded("Done. You can close this page.");
});

takeSessionFromFragment();
if (startInPopup()) {
  // Goes to the provider once the opener handed over the credential.
} else if (relayToOpener()) {
  // The opener shows the result.
} else if (credential()) {
  load().catch(() => {});
} else if (window.location.pathname === "/settings") {
  showEnded("Open this page from the link the application gave you.");
} else {
  showLogin();
}
