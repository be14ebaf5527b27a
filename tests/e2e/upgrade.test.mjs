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
import { parse as parseCsv } from 'csv-parse/sync';
import { startWorker, postCallback, waitFor, ROOT, API } from './harness.mjs';
import { READS, VARS } from '../upgrade/data.mjs';

const FIXTURE = join(ROOT, 'tests/upgrade/from-e627ca7');

/** An answer as compared: JSON parsed, this run's origin replaced, and the
 * fields older builds did not have removed. */
function normalized(path, body, origin) {
  const text = body.replaceAll(origin, 'ORIGIN');
  // Fields later builds added: the media archive, and the quarantine's
  // count (its paging came with it).
  const drop = (v) => {
    if (v && typeof v === 'object' && !Array.isArray(v) && 'timeline' in v) delete v.archivedMedia;
    if (path.startsWith('/quarantine') && v && typeof v === 'object' && 'items' in v) delete v.totalCount;
    return v;
  };
  if (path.startsWith('/export') && !path.includes('csv')) return text.split('\n').filter(Boolean).map((l) => drop(JSON.parse(l)));
  // CSV: the columns later builds appended (the Multi-Channel `channel`
  // and `readTime`) are left off.
  if (path.includes('format=csv') && text.startsWith('messageId,')) {
    const rows = parseCsv(text, { relaxColumnCount: false });
    const keep = rows[0].filter((c) => c !== 'channel' && c !== 'readTime').length;
    return rows.map((r) => r.slice(0, keep));
  }
  try { return drop(JSON.parse(text)); } catch { return text; }
}

test('a ledger written by the older layout answers every read the same while and after its tables change, and keeps working', async () => {
  const answers = JSON.parse(readFileSync(join(FIXTURE, 'answers.json'), 'utf8'));
  const persistDir = join(mkdtempSync(join(tmpdir(), 'bw-ledger-upgrade-')), 'state');
  cpSync(join(FIXTURE, 'state'), persistDir, { recursive: true });
  // One list row per alarm, so the move takes several.
  const vars = { ...VARS, MIGRATION_BATCH_ROWS: '1' };
  let w = await startWorker({ build: 'build-test', vars, persistDir });
  const sql = async (q, params = []) => {
    const r = await fetch(`${w.url}/__test/shard-sql`, { method: 'POST', headers: API, body: JSON.stringify({ shard: 0, sql: q, params }) });
    assert.equal(r.status, 200, await r.clone().text());
    return (await r.json()).rows;
  };
  const readAll = async () => {
    const got = {};
    for (const path of READS) {
      const r = await fetch(`${w.url}${path}`, { headers: API });
      got[path] = { status: r.status, body: normalized(path, await r.text(), w.url) };
    }
    return got;
  };
  const tables = async () => (await sql("SELECT type, name FROM sqlite_master WHERE name LIKE 'message_rows%' ORDER BY name"))
    .map((r) => `${r.type} ${r.name}`);
  try {
    // The first request wakes the shard, which starts the move and arms its
    // alarm; that request drops the alarm again, so the move stands still
    // with no row moved until the restart below.
    const drop = await fetch(`${w.url}/__test/drop-alarm`, { method: 'POST', headers: API, body: JSON.stringify({ messageId: 'up-sms-1' }) });
    assert.equal(drop.status, 200, await drop.text());
    assert.deepEqual(await tables(), ['view message_rows', 'trigger message_rows_delete', 'trigger message_rows_insert',
      'trigger message_rows_update', 'table message_rows_v1', 'table message_rows_v2']);
    const [{ n: rows }] = await sql('SELECT COUNT(*) AS n FROM message_rows_v1');
    assert.equal(rows, 7, 'the data set has 7 list rows');

    // Halfway: every read answers as the old build did.
    assert.deepEqual(Object.keys(answers), READS);
    for (const path of READS) {
      const r = await fetch(`${w.url}${path}`, { headers: API });
      const body = await r.text();
      assert.equal(r.status, answers[path].status, `${path}: ${body}`);
      assert.deepEqual(normalized(path, body, w.url), normalized(path, answers[path].body, 'ORIGIN'), path);
    }
    // The old per-message index is gone, and the events are all there.
    assert.deepEqual((await sql("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")).map((r) => r.name),
      ['sqlite_autoindex_events_1']);
    const [{ n: events }] = await sql('SELECT COUNT(*) AS n FROM events');
    assert.equal(events, 10, 'the data set has 10 events (the conflict is kept aside)');
    // Metrics count the old events as stored.
    const metrics = await (await fetch(`${w.url}/metrics`, { headers: API })).text();
    assert.match(metrics, new RegExp(`^bw_ledger_events_total\\{result="stored"\\} ${events}$`, 'm'));

    // Halfway, an old message moves on: its row goes to the new table, and
    // is updated there.
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
    assert.deepEqual(await sql('SELECT message_id, state FROM message_rows_v2'), [{ message_id: 'up-sms-1', state: 'read' }]);
    assert.deepEqual(await sql('SELECT COUNT(*) AS n FROM message_rows_v1'), [{ n: 6 }]);
    // A retried old callback is still a duplicate.
    const again = await postCallback(w.url, [JSON.parse(JSON.stringify(read))]);
    assert.deepEqual(await again.json(), { stored: 0, duplicates: 1, conflicts: 0, quarantined: 0 });
    const halfway = await readAll();

    // After a restart the woken shard finds its alarm gone and the move
    // unfinished: it re-arms, and the alarm moves a row per wake.
    await w.stop();
    w = await startWorker({ build: 'build-test', vars, persistDir });
    assert.equal((await fetch(`${w.url}/messages/up-in-1`, { headers: API })).status, 200);
    const seen = new Set();
    for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
      const t = await tables();
      if (t.length === 1) break;
      // The last batch may drop the old table between these two reads.
      const r = await fetch(`${w.url}/__test/shard-sql`, {
        method: 'POST', headers: API, body: JSON.stringify({ shard: 0, sql: 'SELECT COUNT(*) AS n FROM message_rows_v1' }),
      });
      if (r.status === 200) seen.add((await r.json()).rows[0].n);
      else if ((await tables()).length !== 1) assert.fail(`the old table is there but unreadable: ${await r.text()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(await tables(), ['table message_rows']);
    assert.ok(seen.size >= 2, `the move took several alarms (old rows seen: ${[...seen]})`);
    assert.match((await sql("SELECT sql FROM sqlite_master WHERE name = 'message_rows'"))[0].sql, /WITHOUT ROWID$/);
    assert.deepEqual(
      (await sql("SELECT name FROM sqlite_master WHERE type IN ('index', 'trigger') AND tbl_name = 'message_rows' ORDER BY name")).map((r) => r.name),
      ['list_by_destination', 'list_by_source', 'list_by_status', 'list_by_time']);
    assert.deepEqual(await sql('SELECT COUNT(*) AS n FROM message_rows'), [{ n: 7 }]);
    // The move changed no answer.
    assert.deepEqual(await readAll(), halfway);
    // And the shard goes on: a new message, then the old one's duplicate.
    const fresh = { ...read, type: 'message-delivered', description: 'ok', message: { ...read.message, id: 'up-new-1' } };
    assert.equal((await postCallback(w.url, [fresh])).status, 200);
    assert.equal((await (await fetch(`${w.url}/messages/up-new-1`, { headers: API })).json()).recipients[0].status, 'delivered');
    assert.deepEqual(await (await postCallback(w.url, [read])).json(), { stored: 0, duplicates: 1, conflicts: 0, quarantined: 0 });
  } finally {
    await w.stop();
  }
});

test('a shard an earlier build left mid-move gains the Multi-Channel columns, then finishes the move', async () => {
  const persistDir = join(mkdtempSync(join(tmpdir(), 'bw-ledger-midmove-')), 'state');
  const vars = { ...VARS, MIGRATION_BATCH_ROWS: '1' };
  let w = await startWorker({ build: 'build-test', vars, persistDir });
  const sql = async (q) => {
    const r = await fetch(`${w.url}/__test/shard-sql`, { method: 'POST', headers: API, body: JSON.stringify({ shard: 0, sql: q, params: [] }) });
    assert.equal(r.status, 200, `${q}: ${await r.clone().text()}`);
    return (await r.json()).rows;
  };
  const status = (id, to, extra = {}) => ({
    type: 'message-delivered', time: '2026-11-20T10:00:05.000Z', description: 'ok', to,
    message: { id, owner: 'Agent', applicationId: 'app', time: '2026-11-20T10:00:00.000Z', segmentCount: 1, direction: 'out', to: [to], from: 'Agent', text: '', ...extra },
  });
  try {
    for (const [id, to] of [['mid-1', '+15552220001'], ['mid-2', '+15552220002']]) {
      assert.equal((await postCallback(w.url, [status(id, to)])).status, 200);
    }
    // What a build before these columns left: both tables without them, one
    // row in each, and the view over them (its triggers go with it below).
    const old = 'message_id, destination_tn, source_tn, message_status, message_direction, message_type, segment_count, error_code, receive_time_ms, carrier_name, message_length, attachment_count, recipient_count, text, media, state, flags';
    for (const q of [
      'ALTER TABLE message_rows RENAME TO message_rows_v2',
      'ALTER TABLE message_rows_v2 DROP COLUMN channel',
      'ALTER TABLE message_rows_v2 DROP COLUMN read_time_ms',
      'CREATE TABLE message_rows_v1 AS SELECT * FROM message_rows_v2 WHERE 0',
      "INSERT INTO message_rows_v1 SELECT * FROM message_rows_v2 WHERE message_id = 'mid-1'",
      "DELETE FROM message_rows_v2 WHERE message_id = 'mid-1'",
      `CREATE VIEW message_rows AS SELECT ${old} FROM message_rows_v1 UNION ALL SELECT ${old} FROM message_rows_v2`,
    ]) await sql(q);
    await w.stop();
    w = await startWorker({ build: 'build-test', vars, persistDir });
    // Woken, the shard adds the columns to both tables and makes the view
    // again; its alarm then moves the old row, and the view goes.
    assert.equal((await fetch(`${w.url}/messages/mid-1`, { headers: API })).status, 200);
    const tables = async () => (await sql("SELECT type, name FROM sqlite_master WHERE name LIKE 'message_rows%' ORDER BY name")).map((r) => `${r.type} ${r.name}`);
    const done = await waitFor(async () => (await tables()).join() === 'table message_rows', 20_000);
    assert.ok(done, `the move finished: ${await tables()}`);
    assert.deepEqual((await sql('SELECT message_id, channel FROM message_rows ORDER BY message_id')),
      [{ message_id: 'mid-1', channel: null }, { message_id: 'mid-2', channel: null }]);
    // And the new columns are written: an RBM read of the old message.
    const read = { ...status('mid-1', '+15552220001', { channel: 'RBM' }), type: 'message-read', time: '2026-11-20T10:00:09.000Z', eventTime: '2026-11-20T10:00:08.000Z' };
    assert.equal((await postCallback(w.url, [read])).status, 200);
    const listed = await (await fetch(`${w.url}/api/v2/users/${VARS.BW_ACCOUNT_ID}/messages?messageId=mid-1`, { headers: API })).json();
    assert.deepEqual(listed.messages.map((x) => [x.channel, x.readTime, x.messageStatus]), [['RBM', '2026-11-20T10:00:08.000Z', 'DELIVERED']]);
  } finally {
    await w.stop();
  }
});
