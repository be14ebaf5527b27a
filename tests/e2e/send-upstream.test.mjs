// Token refresh and the legacy Basic fallback, each on its own Worker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, sha256 } from './harness.mjs';
import { freePort } from '../support/ports.mjs';
import { startFakeBandwidth } from '../support/fake-bandwidth.mjs';

const KEY = 'refresh-key';
const CLIENT_KEYS = JSON.stringify([{ id: 'k', key_sha256: sha256(KEY), allowed_from: ['+15551110000'] }]);
const base = (fakeUrl) => ({
  BW_ACCOUNT_ID: '9900000', BW_APPLICATION_ID: 'app', CLIENT_KEYS, UPSTREAM_TIMEOUT_MS: '1000',
  BANDWIDTH_API_BASE: `${fakeUrl}/api/v2`, BANDWIDTH_TOKEN_URL: `${fakeUrl}/api/v1/oauth2/token`,
});
const send = (url) => fetch(`${url}/api/v2/users/9900000/messages`, {
  method: 'POST', headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
  body: JSON.stringify({ to: ['+15552220001'], from: '+15551110000', text: 'hi' }),
});

test('the token is refreshed 60 s before it expires', async () => {
  const fake = await startFakeBandwidth();
  fake.tokenExpiresIn = 62; // fresh for 2 s, then within the 60 s margin
  const w = await startWorker({ vars: { ...base(fake.url), BW_CLIENT_ID: 'id', BW_CLIENT_SECRET: 'secret' } });
  try {
    assert.equal((await send(w.url)).status, 202);
    assert.equal((await send(w.url)).status, 202);
    assert.equal(fake.tokenRequests.length, 1);
    await new Promise((r) => setTimeout(r, 2300));
    assert.equal((await send(w.url)).status, 202);
    assert.equal(fake.tokenRequests.length, 2, 'a new token after the old one entered its refresh margin');
    assert.deepEqual(fake.messageRequests.map((r) => r.headers.authorization), ['Bearer tok-1', 'Bearer tok-1', 'Bearer tok-2']);

    // Refused client credentials: 502, and nothing is sent.
    fake.tokenStatus = 401;
    await new Promise((r) => setTimeout(r, 2300));
    const refused = await send(w.url);
    assert.equal(refused.status, 502);
    assert.equal((await refused.json()).type, 'upstream-credentials');
    assert.equal(fake.messageRequests.length, 3);
  } finally {
    await w.stop();
    await fake.close();
  }
});

test('legacy Basic credentials are the fallback, and an unreachable Bandwidth is 502', async () => {
  const fake = await startFakeBandwidth();
  const closed = await freePort();
  const w = await startWorker({ vars: { ...base(fake.url), BW_USERNAME: 'api-user', BW_PASSWORD: 'api-pass' } });
  const dead = await startWorker({ vars: { ...base(`http://127.0.0.1:${closed}`), BW_USERNAME: 'u', BW_PASSWORD: 'p' } });
  try {
    assert.equal((await send(w.url)).status, 202);
    assert.equal(fake.tokenRequests.length, 0);
    assert.equal(fake.messageRequests[0].headers.authorization, 'Basic ' + Buffer.from('api-user:api-pass').toString('base64'));
    const r = await send(dead.url);
    assert.equal(r.status, 502);
    assert.equal((await r.json()).type, 'upstream-unreachable');
  } finally {
    await w.stop();
    await dead.stop();
    await fake.close();
  }
});
