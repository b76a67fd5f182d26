// {{title}}: a Gatehouse connector in JavaScript, built for the world
// `provider` with componentize-js. It verifies an API token by asking the
// provider who the token belongs to: change ME_PATH and the account below
// to your provider's "current user" endpoint (the guide: plugins/README.md
// in the Gatehouse repository, "A connector in JavaScript").
import { send } from 'gatehouse:host/http@0.1.0';
import { write } from 'gatehouse:host/log@0.1.0';

export const ME_PATH = '/user';

// A WIT variant is `{ tag, val }`; throwing one from an export returns it
// as the WIT result's error.
const fail = (tag, val) => {
  throw { tag, val };
};

// GET through the host, which adds the token (`credentialPresentation`);
// refusals and transport failures become the standard verify errors.
function getJson(url) {
  let response;
  try {
    response = send({ method: 'GET', url, headers: [['accept', 'application/json']], body: new Uint8Array(), authenticate: true });
  } catch (e) {
    const { tag, val } = e.payload ?? { tag: 'unreachable', val: String(e) };
    if (tag === 'denied') fail('egress-denied', val);
    if (tag === 'timeout') fail('upstream-timeout');
    fail('upstream-unreachable', `The provider could not be reached: ${val ?? tag}`);
  }
  const status = response.status;
  if (status === 401) fail('invalid-token', 'The provider does not accept this token (HTTP 401).');
  if (status === 429) {
    const retry = response.headers.find(([k]) => k === 'retry-after')?.[1];
    fail('rate-limited', Number.parseInt(retry, 10) || undefined);
  }
  if (status < 200 || status > 299) fail('upstream-error', `The provider answered HTTP ${status}.`);
  try {
    return JSON.parse(new TextDecoder().decode(response.body));
  } catch {
    return fail('upstream-error', "The provider's answer is not JSON; check the base URL.");
  }
}

export const connector = {
  manifest() {
    return {
      id: '{{id}}',
      name: 'Connect using {{title}}',
      vendor: '',
      authMethod: 'personal-access-token',
      description: 'Verifies an API token.',
      notes: [],
      fields: [
        { key: 'token', label: 'API token', kind: 'secret', required: true },
        { key: 'base_url', label: 'Base URL', kind: 'url', required: true },
      ],
      requiredScopes: [],
      requiredScopesRule: 'all-of',
      version: '0.1.0',
      credentialPresentation: { header: 'authorization', value: 'Bearer {token}' },
      actions: [],
      syncModels: [],
    };
  },

  verify(credentials) {
    const { base_url: baseUrl } = Object.fromEntries(credentials);
    if (!baseUrl) fail('invalid-input', 'The field "base_url" is required.');
    const user = getJson(`${baseUrl}${ME_PATH}`);
    if (user?.id === undefined || typeof user.username !== 'string') {
      fail('upstream-error', 'The answer does not name a user; check the base URL.');
    }
    write('debug', 'token accepted', [['user', user.username]]);
    return { account: { id: String(user.id), username: user.username, name: user.name ?? undefined }, scopes: [], tokenKind: 'api-token' };
  },
};
