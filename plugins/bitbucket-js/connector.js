// Bitbucket Data Center with an HTTP access token, in JavaScript: the
// guide's JavaScript connector, built with componentize-js for the world
// `provider` (see README.md here and plugins/README.md, "A connector in
// JavaScript"). Everything the host gives it is imported below.
import { send } from 'gatehouse:host/http@0.1.0';
import { write } from 'gatehouse:host/log@0.1.0';

const VERSION = '0.1.0';

// A WIT variant is `{ tag, val }`; throwing one from an export whose WIT
// result has that error type returns it as the error.
const fail = (tag, val) => {
  throw { tag, val };
};

// The host's transport failure (`http.error`) as the verify-error it means.
function transportError(e) {
  const { tag, val } = e.payload ?? { tag: 'unreachable', val: String(e) };
  switch (tag) {
    case 'denied': return fail('egress-denied', val);
    case 'timeout': return fail('upstream-timeout');
    case 'too-large': return fail('upstream-error', 'The answer is larger than the host allows.');
    case 'invalid-request': return fail('invalid-input', `The request could not be built: ${val}`);
    default: return fail('upstream-unreachable', `Bitbucket could not be reached: ${val}`);
  }
}

// GET through the host, which adds the token (`credentialPresentation`).
function get(url) {
  let response;
  try {
    response = send({ method: 'GET', url, headers: [['accept', 'application/json']], body: new Uint8Array(), authenticate: true });
  } catch (e) {
    transportError(e);
  }
  const header = (name) => response.headers.find(([k]) => k === name)?.[1];
  const status = response.status;
  if (status === 401) fail('invalid-token', 'Bitbucket does not accept this token (HTTP 401).');
  if (status === 429) fail('rate-limited', Number.parseInt(header('retry-after'), 10) || undefined);
  if (status < 200 || status > 299) fail('upstream-error', `Bitbucket answered HTTP ${status}.`);
  return { header, json: () => JSON.parse(new TextDecoder().decode(response.body)) };
}

export const connector = {
  manifest() {
    return {
      id: 'bitbucket-js',
      name: 'Connect Bitbucket Data Center (JavaScript)',
      vendor: 'Atlassian',
      authMethod: 'personal-access-token',
      description: 'Verifies a Bitbucket Data Center HTTP access token.',
      notes: [],
      fields: [
        { key: 'token', label: 'HTTP access token', kind: 'secret', required: true },
        { key: 'base_url', label: 'Bitbucket URL', kind: 'url', required: true, placeholder: 'https://bitbucket.example.com' },
      ],
      requiredScopes: [],
      requiredScopesRule: 'all-of',
      version: VERSION,
      credentialPresentation: { header: 'authorization', value: 'Bearer {token}' },
      actions: [],
      syncModels: [],
    };
  },

  verify(credentials) {
    const fields = Object.fromEntries(credentials);
    if (!fields.base_url) fail('invalid-input', 'The field "base_url" is required.');
    // Bitbucket names the token's user in a header of any REST answer.
    const slug = get(`${fields.base_url}/rest/api/1.0/application-properties`).header('x-ausername');
    if (!slug) fail('invalid-token', 'Bitbucket did not recognise the token.');
    write('debug', 'token accepted', [['user', slug]]);
    const user = get(`${fields.base_url}/rest/api/1.0/users/${encodeURIComponent(slug)}`).json();
    return {
      account: { id: String(user.id), username: user.slug, name: user.displayName, email: user.emailAddress },
      scopes: [],
      tokenKind: 'http-access-token',
    };
  },
};
