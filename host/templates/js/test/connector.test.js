// `verify` against a scripted upstream, natively: `npm test`.
import { beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import * as host from './host.js';
import { connector, ME_PATH } from '../connector.js';

const credentials = [['token', 'test-token'], ['base_url', 'https://api.example.com']];

beforeEach(() => host.reset());

test('a valid token names its user', () => {
  host.on('GET', ME_PATH, { status: 200, json: { id: 7, username: 'jane', name: 'Jane Doe' } });
  const verified = connector.verify(credentials);
  assert.deepEqual(verified.account, { id: '7', username: 'jane', name: 'Jane Doe' });
  assert.ok(host.requests[0].authenticate, 'the host presents the token');
  assert.deepEqual(host.logs, [{ level: 'debug', message: 'token accepted', fields: { user: 'jane' } }]);
});

test('refusals map to the standard errors', () => {
  host.on('GET', ME_PATH, { status: 401 });
  host.on('GET', ME_PATH, { status: 429, headers: [['retry-after', '30']] });
  host.on('GET', ME_PATH, { status: 503 });
  assert.throws(() => connector.verify(credentials), { tag: 'invalid-token' });
  assert.throws(() => connector.verify(credentials), { tag: 'rate-limited', val: 30 });
  assert.throws(() => connector.verify(credentials), { tag: 'upstream-error' });
});

test('the manifest names the connector', () => {
  assert.equal(connector.manifest().id, '{{id}}');
});
