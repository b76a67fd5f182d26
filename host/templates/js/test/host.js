// The host's imports for native tests (`npm test`): `send` answers from a
// scripted upstream and records each request, `write` records log lines.
// test/register.js points `gatehouse:host/*` here.

const routes = [];
export const requests = [];
export const logs = [];

// Scripts the answer to `method path` (any query unless `path` has one).
// Several answers to one route are given in order, the last one repeats.
// `reply` is `{ status, headers: [[k, v]], json | text }` or `{ error: { tag, val } }`.
export function on(method, path, reply) {
  const route = routes.find((r) => r.method === method && r.path === path);
  if (route) route.replies.push(reply);
  else routes.push({ method, path, replies: [reply] });
}

// Forgets routes, requests and logs (call it before each test).
export function reset() {
  routes.length = 0;
  requests.length = 0;
  logs.length = 0;
}

class ComponentError extends Error {
  constructor(payload) {
    super(`${payload.tag}`);
    this.payload = payload;
  }
}

export function send(request) {
  const url = new URL(request.url);
  requests.push({ ...request, path: url.pathname + url.search });
  const route = routes.find(
    (r) => r.method === request.method && (r.path === url.pathname + url.search || (!r.path.includes('?') && r.path === url.pathname)),
  );
  const reply = route ? (route.replies.length > 1 ? route.replies.shift() : route.replies[0]) : { status: 404, text: `no reply for ${request.method} ${url.pathname}` };
  if (reply.error) throw new ComponentError(reply.error);
  const body = reply.json !== undefined ? JSON.stringify(reply.json) : (reply.text ?? '');
  return {
    status: reply.status,
    headers: (reply.headers ?? []).map(([k, v]) => [k.toLowerCase(), v]),
    body: new TextEncoder().encode(body),
  };
}

export function write(level, message, fields) {
  logs.push({ level, message, fields: Object.fromEntries(fields) });
}
