// Opt-out compliance: a person who texts STOP (or whose carrier answers
// 4775) is never texted again by this account until they opt back in, the
// confirmation goes out once, every change is audited and forwarded, and
// erasure keeps the suppression.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { startWorker, postCallback, getJson, uniqueId, API, sha256, waitFor, inboundEvent } from './harness.mjs';
import { startFakeBandwidth } from '../support/fake-bandwidth.mjs';

const ACCOUNT = '9900000';
const OUR = '+15551110000';
const OUR2 = '+15551110002';
const KEY = 'optout-client-key';
const REPLY = 'You are unsubscribed. Reply START to resubscribe.';
const SECRET = 'whsec_' + Buffer.from('optout-forward-secret-0123456789').toString('base64');

let fake;
let receiver;
const forwards = [];
let w;
let seq = 0;

function vars(extra = {}) {
  return {
    BW_ACCOUNT_ID: ACCOUNT, BW_APPLICATION_ID: 'app', BW_CLIENT_ID: 'id', BW_CLIENT_SECRET: 'secret',
    BANDWIDTH_API_BASE: `${fake.url}/api/v2`, BANDWIDTH_TOKEN_URL: `${fake.url}/api/v1/oauth2/token`,
    CLIENT_KEYS: JSON.stringify([{ id: 'web', key_sha256: sha256(KEY), allowed_from: [OUR, OUR2] }]),
    FORWARD_TARGETS: JSON.stringify([{ id: 'compliance', url: `${receiver.url}/hook`, secret: SECRET, events: ['optout.changed'] }]),
    FORWARD_RETRY_BASE_MS: '200',
    OPT_OUT_REPLY: REPLY,
    ...extra,
  };
}

before(async () => {
  fake = await startFakeBandwidth();
  const srv = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => { forwards.push(JSON.parse(Buffer.concat(chunks).toString('utf8'))); res.writeHead(204); res.end(); });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  receiver = { srv, url: `http://127.0.0.1:${srv.address().port}` };
  w = await startWorker({ vars: vars() });
});

after(async () => {
  await w?.stop();
  await fake?.close();
  receiver?.srv.closeAllConnections?.();
  await new Promise((r) => receiver?.srv.close(r));
});

/** A person's number no other test uses. */
const person = () => `+1555${String(7000000 + process.pid % 1000 * 1000 + ++seq).slice(-7)}`;

const inbound = (from, text, { to = OUR, id } = {}) => [inboundEvent({ id, from, to, text })];

function send(to, { from = OUR, auth = `Bearer ${KEY}`, extra = {}, url = w.url } = {}) {
  return fetch(`${url}/api/v2/users/${ACCOUNT}/messages`, {
    method: 'POST', headers: { Authorization: auth, 'Content-Type': 'application/json' },
    body: JSON.stringify({ to: Array.isArray(to) ? to : [to], from, text: 'hello', ...extra }),
  });
}

/** Proxied sends (not confirmations) that reached the fake Bandwidth for `numbers`. */
const sendsTo = (numbers) => fake.messageRequests.filter((m) => {
  const b = JSON.parse(m.body);
  return b.text !== REPLY && b.to.some((t) => numbers.includes(t));
}).length;

async function refused(r, numbers) {
  assert.equal(r.status, 403);
  const body = await r.json();
  assert.equal(body.type, 'recipient-opted-out');
  assert.deepEqual(body.numbers, numbers);
}


test('each of the FCC\'s seven keywords, in any case and with punctuation, opts out; "stop texting me" too; "don\'t stop" and "STOPPED" do not', async () => {
  const says = ['  STOP! ', 'Quit.', 'end', 'REVOKE 🛑', 'opt-out', 'Cancel!!!', 'unsubscribe', 'stop texting me', 'StopAll', 'STOP ALL'];
  for (const text of says) {
    const p = person();
    assert.equal((await postCallback(w.url, inbound(p, text))).status, 200);
    await refused(await send(p), [p]);
    assert.equal(sendsTo([p]), 0, `nothing sent to ${p} after ${JSON.stringify(text)}`);
  }
  for (const text of ["don't stop", 'STOPPED', 'please end it', 'hi']) {
    const p = person();
    assert.equal((await postCallback(w.url, inbound(p, text))).status, 200);
    assert.equal((await send(p)).status, 202, `${JSON.stringify(text)} is not an opt-out`);
  }
});

test('a group send that includes an opted-out number sends nothing', async () => {
  const [a, b, c] = [person(), person(), person()];
  await postCallback(w.url, inbound(b, 'stop'));
  await refused(await send([a, b, c]), [b]);
  assert.equal(sendsTo([a, b, c]), 0, 'no recipient of the send got it');
});

test('race: a STOP and a send released together; a send after the STOP\'s 2xx is always refused', async () => {
  for (let i = 0; i < 5; i++) {
    const p = person();
    const [cb, s] = await Promise.all([postCallback(w.url, inbound(p, 'STOP')), send(p)]);
    assert.equal(cb.status, 200);
    assert.ok([202, 403].includes(s.status), `the racing send: ${s.status}`);
    await refused(await send(p), [p]);
  }
});

test('START lifts a keyword opt-out; a 4775 failure opts out with reason carrier-4775', async () => {
  const p = person();
  await postCallback(w.url, inbound(p, 'stop'));
  await refused(await send(p), [p]);
  await postCallback(w.url, inbound(p, 'START'));
  assert.equal((await send(p)).status, 202);

  const q = person();
  const time = new Date().toISOString();
  const failed = [{ type: 'message-failed', time, to: q, errorCode: 4775, description: 'destination-rejected-due-to-user-opt-out',
    message: { id: uniqueId('f'), owner: OUR, applicationId: 'app', time, segmentCount: 1, direction: 'out', to: [q], from: OUR, text: '' } }];
  assert.equal((await postCallback(w.url, failed)).status, 200);
  await refused(await send(q), [q]);
  const listed = await getJson(w.url, `/optouts?number=${encodeURIComponent(q)}`);
  assert.equal(listed.status, 200);
  assert.equal(listed.json.optouts.length, 1);
  assert.equal(listed.json.optouts[0].reason, 'carrier-4775');
  assert.equal(listed.json.optouts[0].scope, 'account');
});

test('OPT_OUT_REPLY goes out exactly once, from the number that got the STOP, however often Bandwidth retries', async () => {
  const p = person();
  const body = inbound(p, 'Stop', { to: OUR2 });
  const replyId = uniqueId('reply');
  fake.nextIds.push(replyId); // the next 202 is the confirmation's
  const answers = await Promise.all(Array.from({ length: 5 }, () => postCallback(w.url, body)));
  assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 200]);
  const replies = () => fake.messageRequests.filter((m) => JSON.parse(m.body).to?.[0] === p);
  assert.ok(await waitFor(() => replies().length >= 1), 'the confirmation was sent');
  await new Promise((r) => setTimeout(r, 1000)); // room for a wrong second one
  assert.equal(replies().length, 1);
  const sent = JSON.parse(replies()[0].body);
  assert.deepEqual([sent.from, sent.text, sent.applicationId], [OUR2, REPLY, 'app']);
  // Recorded in the ledger like any send.
  const recorded = await getJson(w.url, `/messages/${replyId}`);
  assert.equal(recorded.status, 200);
  assert.deepEqual([recorded.json.from, recorded.json.text, recorded.json.recipients[0].number], [OUR2, REPLY, p]);
  // A second STOP within 24 hours (after a START) sends nothing more.
  await postCallback(w.url, inbound(p, 'start', { to: OUR2 }));
  await postCallback(w.url, inbound(p, 'stop', { to: OUR2 }));
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(replies().length, 1);
});

test('operator add, lift and history round-trip; lifting needs a note; changes are forwarded', async () => {
  const p = person();
  const added = await fetch(`${w.url}/optouts`, { method: 'POST', headers: API, body: JSON.stringify({ number: p, note: 'asked by phone' }) });
  assert.equal(added.status, 201);
  assert.equal((await added.json()).reason, 'operator');
  await refused(await send(p), [p]);
  // A keyword opt-in does not lift what the operator recorded.
  await postCallback(w.url, inbound(p, 'START'));
  await refused(await send(p), [p]);
  const noNote = await fetch(`${w.url}/optouts/${encodeURIComponent(p)}`, { method: 'DELETE', headers: API });
  assert.equal(noNote.status, 400);
  const lifted = await fetch(`${w.url}/optouts/${encodeURIComponent(p)}`, { method: 'DELETE', headers: API, body: JSON.stringify({ note: 'opted in on the web form' }) });
  assert.equal(lifted.status, 200);
  assert.equal((await send(p)).status, 202);
  const history = await getJson(w.url, `/optouts/${encodeURIComponent(p)}/history`);
  assert.deepEqual(history.json.history.map((h) => [h.state, h.reason, h.note]),
    [['opted-out', 'operator', 'asked by phone'], ['opted-in', 'operator', 'opted in on the web form']]);
  assert.equal((await fetch(`${w.url}/optouts/${encodeURIComponent(p)}`, { method: 'DELETE', headers: API, body: JSON.stringify({ note: 'again' }) })).status, 404);
  assert.equal((await fetch(`${w.url}/optouts`, { headers: { Authorization: `Bearer ${KEY}` } })).status, 401);
  assert.ok(await waitFor(() => forwards.filter((f) => f.number === p).length === 2), 'both changes forwarded');
  const docs = forwards.filter((f) => f.number === p);
  assert.deepEqual(docs.map((d) => [d.type, d.state, d.scope, d.reason]),
    [['optout.changed', 'opted-out', 'account', 'operator'], ['optout.changed', 'opted-in', 'account', 'operator']]);
});

test('after erasure of the number, the send is still refused; the list keeps only its hash', async () => {
  const p = person();
  await postCallback(w.url, inbound(p, 'stop'));
  const erased = await fetch(`${w.url}/erasure`, { method: 'POST', headers: API, body: JSON.stringify({ number: p }) });
  assert.equal(erased.status, 200);
  await refused(await send(p), [p]);
  const listed = await getJson(w.url, `/optouts?number=${encodeURIComponent(p)}`);
  assert.equal(listed.json.optouts.length, 1);
  assert.equal(listed.json.optouts[0].number, null);
  assert.match(listed.json.optouts[0].numberHash, /^[0-9a-f]{64}$/);
  const all = await getJson(w.url, '/optouts');
  assert.ok(!JSON.stringify(all.json).includes(p), 'the number is nowhere in the list');
});

test('operator sends are checked too; only "optOutOverride": true gets past, and it is recorded', async () => {
  const p = person();
  await postCallback(w.url, inbound(p, 'stop'));
  await refused(await send(p, { auth: `Bearer ${API.Authorization.slice(7)}` }), [p]);
  const keyTry = await send(p, { extra: { optOutOverride: true } });
  assert.equal(keyTry.status, 403);
  assert.equal((await keyTry.json()).type, 'forbidden');
  const id = uniqueId('override');
  fake.nextIds.push(id);
  const ok = await send(p, { auth: API.Authorization, extra: { optOutOverride: true } });
  assert.equal(ok.status, 202);
  assert.equal(JSON.parse(fake.messageRequests.at(-1).body).optOutOverride, undefined, 'Bandwidth never sees the flag');
  const m = await getJson(w.url, `/messages/${id}`);
  assert.equal(m.status, 200);
  assert.equal(m.json.timeline[0].event.optOutOverride, true);
});

test('/metrics counts opt-outs by scope', async () => {
  const text = await (await fetch(`${w.url}/metrics`, { headers: API })).text();
  const n = Number(text.match(/^bw_ledger_optouts\{scope="account"\} (\d+)$/m)?.[1]);
  assert.ok(n >= 10, text);
  assert.match(text, /^bw_ledger_optouts\{scope="number"\} 0$/m);
});

test('OPT_OUT_SCOPE=number: a STOP to number A leaves number B free to text', async () => {
  const scoped = await startWorker({ vars: vars({ OPT_OUT_SCOPE: 'number', OPT_OUT_REPLY: '' }) });
  try {
    const p = person();
    await postCallback(scoped.url, inbound(p, 'STOP', { to: OUR }));
    await refused(await send(p, { url: scoped.url, from: OUR }), [p]);
    assert.equal((await send(p, { url: scoped.url, from: OUR2 })).status, 202);
    const listed = await getJson(scoped.url, `/optouts?number=${encodeURIComponent(p)}`);
    assert.deepEqual(listed.json.optouts.map((o) => [o.scope, o.scopeNumber]), [['number', OUR]]);
    // START to A lifts A's.
    await postCallback(scoped.url, inbound(p, 'start', { to: OUR }));
    assert.equal((await send(p, { url: scoped.url, from: OUR })).status, 202);
  } finally {
    await scoped.stop();
  }
});
