// Upgrading a deployment that holds data: today's build starts on storage
// written by an older build (tests/upgrade/from-<commit>: its ledger
// shard's SQLite file and that build's answers, made by
// tests/upgrade/make-fixture.mjs), migrates it on first use, and answers
// every read as the old build did. New fields (`archivedMedia`) are the only
// difference allowed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWorker, postCallback, ROOT, API } from './harness.mjs';
import { READS, VARS } from '../upgrade/data.mjs';

const FIXTURE = join(ROOT, 'tests/upgrade/from-e627ca7');

/** An answer as compared: JSON parsed, this run's origin replaced, and the
 * fields older builds did not have removed. */
function normalized(path, body, origin) {
  const text = body.replaceAll(origin, 'ORIGIN');
  const drop = (v) => {
    if (v && typeof v === 'object' && !Array.isArray(v) && 'timeline' in v) delete v.archivedMedia;
    return v;
  };
  if (path.startsWith('/export') && !path.includes('csv')) return text.split('\n').filter(Boolean).map((l) => drop(JSON.parse(l)));
  try { return drop(JSON.parse(text)); } catch { return text; }
}

test('a ledger written by the older layout answers every read the same after the upgrade, and keeps working', async () => {
  const answers = JSON.parse(readFileSync(join(FIXTURE, 'answers.json'), 'utf8'));
  const persistDir = join(mkdtempSync(join(tmpdir(), 'bw-ledger-upgrade-')), 'state');
  cpSync(join(FIXTURE, 'state'), persistDir, { recursive: true });
  const w = await startWorker({ build: 'build-test', vars: VARS, persistDir });
  try {
    assert.deepEqual(Object.keys(answers), READS);
    for (const path of READS) {
      const r = await fetch(`${w.url}${path}`, { headers: API });
      const body = await r.text();
      assert.equal(r.status, answers[path].status, `${path}: ${body}`);
      assert.deepEqual(normalized(path, body, w.url), normalized(path, answers[path].body, 'ORIGIN'), path);
    }
    // The old per-message index is gone, and the events are all there.
    const sql = async (q) => {
      const r = await fetch(`${w.url}/__test/shard-sql`, { method: 'POST', headers: API, body: JSON.stringify({ shard: 0, sql: q }) });
      assert.equal(r.status, 200);
      return (await r.json()).rows;
    };
    assert.deepEqual((await sql("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")).map((r) => r.name),
      ['sqlite_autoindex_events_1']);
    // The full status index gave way to the partial one, built over the old rows.
    assert.deepEqual(
      (await sql("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'message_rows' ORDER BY name")).map((r) => r.name),
      ['rows_by_destination', 'rows_by_rare_status', 'rows_by_source', 'rows_by_time', 'sqlite_autoindex_message_rows_1']);
    const [{ n: rare }] = await sql("SELECT COUNT(*) AS n FROM message_rows INDEXED BY rows_by_rare_status WHERE message_status NOT IN ('DELIVERED', 'RECEIVED')");
    const [{ n: rareRows }] = await sql("SELECT COUNT(*) AS n FROM message_rows WHERE message_status NOT IN ('DELIVERED', 'RECEIVED')");
    assert.ok(rare > 0);
    assert.equal(rare, rareRows);
    const [{ n: events }] = await sql('SELECT COUNT(*) AS n FROM events');
    assert.equal(events, 10, 'the data set has 10 events (the conflict is kept aside)');
    // Metrics count the old events as stored.
    const metrics = await (await fetch(`${w.url}/metrics`, { headers: API })).text();
    assert.match(metrics, new RegExp(`^bw_ledger_events_total\\{result="stored"\\} ${events}$`, 'm'));
    // An old message moves on: its list row is updated in place.
    const read = {
      type: 'message-read', time: '2026-11-20T10:00:09.000Z', description: 'read', to: '+15552220001',
      message: { id: 'up-sms-1', owner: '+15551110000', applicationId: 'app', time: '2026-11-20T10:00:00.000Z', segmentCount: 1,
        direction: 'out', to: ['+15552220001'], from: '+15551110000', text: '', tag: 'upgrade' },
    };
    assert.equal((await postCallback(w.url, [read])).status, 200);
    const m = await (await fetch(`${w.url}/messages/up-sms-1`, { headers: API })).json();
    assert.equal(m.recipients[0].status, 'read');
    const listed = await (await fetch(`${w.url}/api/v2/users/${VARS.BW_ACCOUNT_ID}/messages?messageId=up-sms-1&include=content`, { headers: API })).json();
    assert.deepEqual(listed.messages.map((x) => [x.status, x.carrierName]), [['read', 'Example Mobile']]);
    // A retried old callback is still a duplicate.
    const again = await postCallback(w.url, [JSON.parse(JSON.stringify(read))]);
    assert.deepEqual(await again.json(), { stored: 0, duplicates: 1, conflicts: 0, quarantined: 0 });
  } finally {
    await w.stop();
  }
});
