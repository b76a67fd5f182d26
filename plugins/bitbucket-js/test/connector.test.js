// The connector against a scripted Bitbucket, natively: `npm test`.
import { beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
// The JavaScript test kit that `gatehouse plugins new --lang js` writes.
import * as host from '../../../host/templates/js/test/host.js';
import { connector } from '../connector.js';

const BASE = 'https://bitbucket.example.com';
const credentials = [['token', 'BBDC-secret'], ['base_url', BASE]];
const PROBE = '/rest/api/1.0/application-properties';

beforeEach(() => host.reset());

test('a valid token names its user', () => {
  host.on('GET', PROBE, { status: 200, headers: [['X-AUSERNAME', 'jdoe']], json: { version: '9.4.0' } });
  host.on('GET', '/rest/api/1.0/users/jdoe', { status: 200, json: { id: 101, slug: 'jdoe', displayName: 'Jane Doe', emailAddress: 'jane@example.com' } });
  const verified = connector.verify(credentials);
  assert.deepEqual(verified.account, { id: '101', username: 'jdoe', name: 'Jane Doe', email: 'jane@example.com' });
  assert.equal(host.requests.length, 2);
  assert.ok(host.requests.every((r) => r.authenticate), 'the host presents the token');
  assert.deepEqual(host.logs, [{ level: 'debug', message: 'token accepted', fields: { user: 'jdoe' } }]);
});

test('refusals and transport failures become the standard errors', () => {
  host.on('GET', PROBE, { status: 401 });
  host.on('GET', PROBE, { status: 429, headers: [['retry-after', '30']] });
  host.on('GET', PROBE, { status: 503 });
  host.on('GET', PROBE, { error: { tag: 'timeout' } });
  assert.throws(() => connector.verify(credentials), { tag: 'invalid-token' });
  assert.throws(() => connector.verify(credentials), { tag: 'rate-limited', val: 30 });
  assert.throws(() => connector.verify(credentials), { tag: 'upstream-error' });
  assert.throws(() => connector.verify(credentials), { tag: 'upstream-timeout' });
});

test('an anonymous answer is an invalid token; a missing URL is named', () => {
  host.on('GET', PROBE, { status: 200, json: {} });
  assert.throws(() => connector.verify(credentials), { tag: 'invalid-token' });
  assert.throws(() => connector.verify([['token', 'x']]), { tag: 'invalid-input', val: /base_url/ });
});

test('the manifest declares the token and how the host presents it', () => {
  const m = connector.manifest();
  assert.equal(m.id, 'bitbucket-js');
  assert.deepEqual(m.credentialPresentation, { header: 'authorization', value: 'Bearer {token}' });
});
