// Authentication, routing and limits of the built Worker under workerd.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, postCallback, getJson, basic, API, SECRETS, uniqueId, statusEvent } from './harness.mjs';

let w;
before(async () => { w = await startWorker(); });
after(async () => { await w?.stop(); });

async function quarantineCount() {
  const q = await getJson(w.url, '/quarantine?limit=1000');
  assert.equal(q.status, 200);
  return q.json.items.length;
}

test('Bandwidth challenge: no credentials gets 401 with Basic realm="" and nothing is stored', async () => {
  const id = uniqueId('challenge');
  const before = await quarantineCount();
  const r = await postCallback(w.url, [statusEvent(id)], {});
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Basic realm=""');
  const body = await r.json();
  assert.equal(body.type, 'unauthorized');
  assert.equal((await getJson(w.url, `/messages/${id}`)).status, 404);
  // Garbage without credentials is not quarantined either.
  const g = await postCallback(w.url, 'not json', {});
  assert.equal(g.status, 401);
  assert.equal(await quarantineCount(), before);

  // The retry with credentials, as Bandwidth does after the challenge, is stored.
  const ok = await postCallback(w.url, [statusEvent(id)]);
  assert.equal(ok.status, 200);
  assert.equal((await getJson(w.url, `/messages/${id}`)).status, 200);
});

test('wrong credentials get the same challenge and store nothing', async () => {
  const id = uniqueId('wrong');
  for (const auth of [
    basic(SECRETS.CALLBACK_USER, 'nope'),
    basic('someone', SECRETS.CALLBACK_PASSWORD),
    basic(SECRETS.CALLBACK_USER, SECRETS.CALLBACK_PASSWORD_2), // crossed pairs
    'Basic %%%',
    `Bearer ${SECRETS.API_TOKEN}`,
  ]) {
    const r = await postCallback(w.url, [statusEvent(id)], { Authorization: auth });
    assert.equal(r.status, 401, auth);
    assert.equal(r.headers.get('www-authenticate'), 'Basic realm=""');
  }
  assert.equal((await getJson(w.url, `/messages/${id}`)).status, 404);
});

test('the optional second credential pair is accepted', async () => {
  const id = uniqueId('second');
  const r = await postCallback(w.url, [statusEvent(id)], { Authorization: basic(SECRETS.CALLBACK_USER_2, SECRETS.CALLBACK_PASSWORD_2) });
  assert.equal(r.status, 200);
  assert.equal((await getJson(w.url, `/messages/${id}`)).status, 200);
});

test('read API needs the bearer token; healthz does not', async () => {
  const id = uniqueId('read');
  assert.equal((await postCallback(w.url, [statusEvent(id)])).status, 200);
  for (const headers of [{}, { Authorization: 'Bearer wrong' }, { Authorization: basic() }]) {
    for (const path of [`/messages/${id}`, '/quarantine']) {
      const r = await getJson(w.url, path, headers);
      assert.equal(r.status, 401, `${path} ${JSON.stringify(headers)}`);
      assert.equal(r.json.type, 'unauthorized');
      assert.equal(r.headers.get('www-authenticate'), 'Bearer');
      assert.ok(!r.text.includes(id), 'no data leaks without a token');
    }
  }
  assert.equal((await getJson(w.url, `/messages/${id}`, API)).status, 200);
  const h = await getJson(w.url, '/healthz', {});
  assert.equal(h.status, 200);
  assert.deepEqual(h.json, { status: 'ok' });
});

test('wrong method on the callback path is 405 and stores nothing', async () => {
  for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
    const r = await fetch(`${w.url}/callbacks/bandwidth`, { method, headers: { Authorization: basic() } });
    assert.equal(r.status, 405, method);
    assert.equal(r.headers.get('allow'), 'POST');
    assert.equal((await r.json()).type, 'method-not-allowed');
  }
});

test('a body over 1 MiB is 413 with a JSON error, and nothing is stored', async () => {
  const id = uniqueId('big');
  const before = await quarantineCount();
  const ev = statusEvent(id, { extra: { padding: 'x'.repeat(1024 * 1024) } });
  const r = await postCallback(w.url, [ev]);
  assert.equal(r.status, 413);
  const body = await r.json();
  assert.equal(body.type, 'payload-too-large');
  assert.match(body.description, /1048576/);

  // Without Content-Length (chunked), the limit still holds after reading.
  const payload = Buffer.from(JSON.stringify([ev]));
  const stream = new ReadableStream({
    start(c) {
      for (let i = 0; i < payload.length; i += 65536) c.enqueue(payload.subarray(i, i + 65536));
      c.close();
    },
  });
  const chunked = await fetch(`${w.url}/callbacks/bandwidth`, {
    method: 'POST', headers: { Authorization: basic() }, body: stream, duplex: 'half',
  });
  assert.equal(chunked.status, 413);
  assert.equal((await getJson(w.url, `/messages/${id}`)).status, 404);
  assert.equal(await quarantineCount(), before);

  // Exactly at the limit is fine.
  const small = statusEvent(id);
  const base = Buffer.byteLength(JSON.stringify([small]));
  small.padding = '';
  const fill = 1024 * 1024 - Buffer.byteLength(JSON.stringify([small]));
  small.padding = 'y'.repeat(fill);
  assert.equal(Buffer.byteLength(JSON.stringify([small])), 1024 * 1024);
  assert.ok(base < 1024 * 1024);
  assert.equal((await postCallback(w.url, [small])).status, 200);
  assert.equal((await getJson(w.url, `/messages/${id}`)).status, 200);
});

test('unknown routes are JSON 404s', async () => {
  const r = await getJson(w.url, '/nope', {});
  assert.equal(r.status, 404);
  assert.equal(r.json.type, 'not-found');
  const m = await getJson(w.url, `/messages/${uniqueId('absent')}`);
  assert.equal(m.status, 404);
  assert.equal(m.json.type, 'not-found');
});
