// `npm run bench`: throughput and latency of durable callback ingest under
// plain workerd, against empty Workers in the same workerd, plus the send
// proxy's added latency, list-page latency at 100,000 messages, a longer
// crash-restart run and a longer fuzz run. Prints every figure and writes
// bench/RESULTS.md.
import { execSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ROOT, LEDGER_BUILD, freePort, writeConfig, startWorkerd, readWranglerToml, loadgen } from './workerd.mjs';
import { startFakeBandwidth } from '../tests/support/fake-bandwidth.mjs';
import { crashRestart } from '../tests/support/crash.mjs';
import WebSocket from 'ws';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const LIST_MESSAGES = Number(process.env.BENCH_LIST_MESSAGES ?? 100_000);
const CRASH_KILLS = Number(process.env.BENCH_CRASH_KILLS ?? 20);
// Per strategy; four strategies, so 1,000,000 inputs by default.
const FUZZ_CASES = Number(process.env.BENCH_FUZZ_CASES ?? 250_000);
// LEDGER_SHARDS for the bench's ledger (wrangler.toml's value by default).
const SHARDS = process.env.BENCH_SHARDS;
// BENCH_ONLY=ingest: the three ingest runs and the acknowledged/stored count
// only, for iterating on the ingest path; RESULTS.md is not written.
const ONLY_INGEST = process.env.BENCH_ONLY === 'ingest';
// BENCH_ONLY=cost: only the realistic mix's rows written and the cost
// per million callbacks (ledger and JS peer); RESULTS.md is not written.
const ONLY_COST = process.env.BENCH_ONLY === 'cost';
// BENCH_ONLY=send: only the send proxy's added latency (without and with
// opt-outs in the book, and the operator's override that skips the book);
// RESULTS.md is not written.
const ONLY_SEND = process.env.BENCH_ONLY === 'send';
// Outbound messages in the realistic mix (3 callbacks each, plus one inbound
// message for every three outbound).
const MIX_MESSAGES = Number(process.env.BENCH_MIX_MESSAGES ?? 1500);
// Cloudflare's list prices, USD per million (Workers Paid, after the included use).
const PRICE = { workerRequests: 0.30, objectRequests: 0.15, cpuMs: 0.02, rowsWritten: 1.00, rowsRead: 0.001 };
const OUT = join(ROOT, 'bench/out');
const ACCOUNT = '9900000';
const CLIENT_KEY = 'bench-client-key';
const AUTH = 'Basic ' + Buffer.from('bench:bench-pass').toString('base64');
const API_TOKEN = 'bench-api-token';

const log = (...a) => console.log(...a);
const ms = (v) => `${v.toFixed(2)} ms`;

function percentiles(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p) => s[Math.min(s.length - 1, Math.round((p / 100) * (s.length - 1)))];
  return { p50: at(50), p99: at(99) };
}

async function timeRequests(n, fn) {
  const samples = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn(i);
    samples.push(performance.now() - t0);
  }
  return percentiles(samples);
}

/** A callback of the realistic mix: one event of message `id`. */
function mixCallback(type, id, n) {
  const inbound = type === 'message-received';
  const message = {
    id, owner: inbound ? '+15551110000' : '+15551110000', applicationId: '93de2206-9669-4e07-948d-329f4b722ee2',
    time: '2026-11-20T15:04:04.980Z', segmentCount: 1, direction: inbound ? 'in' : 'out',
    to: ['+15552220001'], from: inbound ? '+15554440001' : '+15551110000', text: inbound ? `reply ${n}` : '', tag: 'bench', priority: 'default',
  };
  const seconds = { 'message-sending': '05', 'message-sent': '06', 'message-delivered': '07', 'message-received': '05' }[type];
  const ev = { type, time: `2026-11-20T15:04:${seconds}.450Z`, description: 'ok', to: '+15552220001', message };
  if (type === 'message-delivered') ev.carrierName = 'Example Wireless';
  return JSON.stringify([ev]);
}

/**
 * The realistic mix of #14 against `base`: for every outbound message its
 * sending, sent and delivered callbacks, in order, each its own request; one
 * inbound message-received for every three outbound; fresh ids. Returns how
 * many callbacks were sent and how many were not answered 2xx.
 */
async function realisticMix(base, { outbound, concurrency = 16, auth, prefix }) {
  const jobs = [];
  for (let i = 0; i < outbound; i++) {
    jobs.push(['message-sending', 'message-sent', 'message-delivered'].map((t) => mixCallback(t, `${prefix}-out-${i}`, i)));
    if (i % 3 === 2) jobs.push([mixCallback('message-received', `${prefix}-in-${i}`, i)]);
  }
  let next = 0;
  let callbacks = 0;
  let failed = 0;
  const lane = async () => {
    while (next < jobs.length) {
      for (const body of jobs[next++]) {
        const r = await fetch(`${base}/callbacks/bandwidth`, { method: 'POST', headers: { Authorization: auth, 'Content-Type': 'application/json' }, body });
        await r.arrayBuffer();
        callbacks += 1;
        if (!r.ok) failed += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return { callbacks, failed };
}

/** Cost per million callbacks at list prices, itemised. */
function costPerMillion({ objectRequestsPerCallback, cpuMsPerCallback, rowsWrittenPerCallback, rowsReadPerCallback }) {
  const items = {
    workerRequests: PRICE.workerRequests,
    objectRequests: objectRequestsPerCallback * PRICE.objectRequests,
    cpu: cpuMsPerCallback * PRICE.cpuMs,
    rowsWritten: rowsWrittenPerCallback * PRICE.rowsWritten,
    rowsRead: rowsReadPerCallback * PRICE.rowsRead,
  };
  return { ...items, total: Object.values(items).reduce((a, b) => a + b, 0) };
}

const usd = (v) => `$${v.toFixed(3)}`;
const costLine = (c) => `Worker requests ${usd(c.workerRequests)} + object requests ${usd(c.objectRequests)} + CPU ${usd(c.cpu)} + rows written ${usd(c.rowsWritten)} + rows read ${usd(c.rowsRead)} = ${usd(c.total)}`;

async function main() {
  mkdirSync(OUT, { recursive: true });
  const results = { date: new Date().toISOString(), nproc: cpus().length, memGiB: (totalmem() / 2 ** 30).toFixed(1), seconds: SECONDS, connections: CONNECTIONS };
  const fake = await startFakeBandwidth();
  const storage = join(OUT, `storage-${Date.now()}`);
  const ports = { ledger: await freePort(), emptyJs: await freePort(), emptyRust: await freePort(), peer: await freePort(), metered: await freePort() };
  const vars = {
    CALLBACK_USER: 'bench', CALLBACK_PASSWORD: 'bench-pass', API_TOKEN,
    BW_ACCOUNT_ID: ACCOUNT, BW_APPLICATION_ID: 'bench-app',
    BANDWIDTH_API_BASE: `${fake.url}/api/v2`, BANDWIDTH_TOKEN_URL: `${fake.url}/api/v1/oauth2/token`,
    BW_CLIENT_ID: 'bench-client', BW_CLIENT_SECRET: 'bench-secret',
    CLIENT_KEYS: JSON.stringify([{ id: 'bench', key_sha256: createHash('sha256').update(CLIENT_KEY).digest('hex'), allowed_from: ['+15551110000'] }]),
    ...(SHARDS ? { LEDGER_SHARDS: SHARDS } : {}),
  };
  const config = writeConfig(OUT, { ports, vars, storage, emptyRustBuild: join(ROOT, 'bench/empty-rust/build') });
  const wd = await startWorkerd(config, ports.ledger, join(OUT, 'workerd.log'));
  const at = (p) => `127.0.0.1:${p}`;
  let acked = 0;
  try {
    log(`# bench: ${results.date}, ${results.nproc} cores, ${results.memGiB} GiB, ${SECONDS}s runs, ${CONNECTIONS} connections, shards=${SHARDS ?? readWranglerToml().vars.LEDGER_SHARDS}`);
    results.shards = SHARDS ?? readWranglerToml().vars.LEDGER_SHARDS;
    const ackedFiles = [];
    const ackedFile = (name) => { const f = join(OUT, `acked-${name}.txt`); ackedFiles.push(f); return ['--acked-file', f]; };
    // What is billed: the realistic mix against the metered ledger (the same
    // build behind bench/meter-shim.mjs, on its own storage) and the JS peer.
    // CPU seconds of the workerd process (user + system), from /proc.
    const cpu = () => {
      const f = readFileSync(`/proc/${wd.child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return (Number(f[11]) + Number(f[12])) / 100;
    };
    const measureCost = async () => {
      const meter = async (port) => (await fetch(`http://${at(port)}/__meter`)).json();
      // Deltas over the mix alone (the peer also served the throughput runs).
      const m0 = await meter(ports.metered);
      const p0 = await meter(ports.peer);
      const c0 = cpu();
      const ledgerMix = await realisticMix(`http://${at(ports.metered)}`, { outbound: MIX_MESSAGES, auth: AUTH, prefix: `mix-${Date.now()}` });
      const ledgerCpu = ((cpu() - c0) * 1000) / ledgerMix.callbacks;
      const m1 = await meter(ports.metered);
      const m = Object.fromEntries(Object.keys(m1).filter((k) => k !== 'byStatement').map((k) => [k, m1[k] - m0[k]]));
      // Where the rows go: each statement's rows written over the mix.
      const byStatement = Object.entries(m1.byStatement).map(([sql, s]) => {
        const before = m0.byStatement[sql] ?? { runs: 0, rowsWritten: 0, rowsRead: 0 };
        return { sql, runs: s.runs - before.runs, rowsWritten: s.rowsWritten - before.rowsWritten, rowsRead: s.rowsRead - before.rowsRead };
      }).filter((s) => s.runs > 0).sort((a, b) => b.rowsWritten - a.rowsWritten);
      const c1 = cpu();
      const peerMix = await realisticMix(`http://${at(ports.peer)}`, { outbound: MIX_MESSAGES, auth: AUTH, prefix: `mix-${Date.now()}` });
      const peerCpu = ((cpu() - c1) * 1000) / peerMix.callbacks;
      const p1 = await meter(ports.peer);
      const p = { rowsWritten: p1.rowsWritten - p0.rowsWritten, rowsRead: p1.rowsRead - p0.rowsRead };
      results.cost = {
        callbacks: ledgerMix.callbacks,
        failed: ledgerMix.failed + peerMix.failed,
        ledger: {
          rowsWrittenPerCallback: m.rowsWritten / ledgerMix.callbacks,
          rowsReadPerCallback: m.rowsRead / ledgerMix.callbacks,
          statementsPerCallback: m.statements / ledgerMix.callbacks,
          objectRequestsPerCallback: (m.objectRequests + m.alarms) / ledgerMix.callbacks,
          mixCpuMsPerCallback: ledgerCpu,
          byStatement,
        },
        peer: {
          rowsWrittenPerCallback: p.rowsWritten / peerMix.callbacks,
          rowsReadPerCallback: p.rowsRead / peerMix.callbacks,
          objectRequestsPerCallback: 1,
          mixCpuMsPerCallback: peerCpu,
        },
      };
      const L = results.cost.ledger;
      log(`realistic mix: ${ledgerMix.callbacks} callbacks (${MIX_MESSAGES} outbound messages x 3, ${Math.floor(MIX_MESSAGES / 3)} inbound), non-2xx ${ledgerMix.failed} (ledger) / ${peerMix.failed} (peer)`);
      log(`rows written per callback: ${L.rowsWrittenPerCallback.toFixed(2)}`);
      log('where the rows written go (per callback, by statement):');
      for (const s of byStatement.filter((s) => s.rowsWritten > 0)) {
        log(`  ${(s.rowsWritten / ledgerMix.callbacks).toFixed(2)} rows in ${(s.runs / ledgerMix.callbacks).toFixed(2)} runs: ${s.sql}`);
      }
      log(`ledger: rows read per callback ${L.rowsReadPerCallback.toFixed(2)}, statements per callback ${L.statementsPerCallback.toFixed(2)}, object requests per callback ${L.objectRequestsPerCallback.toFixed(3)}; JS peer: rows written per callback ${results.cost.peer.rowsWrittenPerCallback.toFixed(2)}`);
    };
    const printCost = (ledgerCpuMs, peerCpuMs, cpuSource) => {
      const L = results.cost.ledger;
      const P = results.cost.peer;
      L.cost = costPerMillion({ ...L, cpuMsPerCallback: ledgerCpuMs });
      P.cost = costPerMillion({ ...P, cpuMsPerCallback: peerCpuMs });
      results.cost.cpuSource = cpuSource;
      log(`cost per million callbacks, ledger: ${costLine(L.cost)}`);
      log(`cost per million callbacks, JS peer: ${costLine(P.cost)}   (CPU from ${cpuSource})`);
    };
    // Send proxy: added latency over calling the fake upstream directly,
    // then with 1,000 opt-outs in the book (a send asks it once, beside its
    // key's guard), and an operator send with "optOutOverride" (no book).
    const measureSend = async () => {
      const sendBody = JSON.stringify({ to: ['+15552220001'], from: '+15551110000', text: 'bench' });
      const sendArgs = (auth, body = sendBody) => ['--path', `/api/v2/users/${ACCOUNT}/messages`, '--body', body, '--auth', auth, '--connections', '4', '--duration', '5'];
      const fakeAddr = fake.url.replace('http://', '');
      results.sendDirect = await loadgen(fakeAddr, ['--path', `/api/v2/users/${ACCOUNT}/messages`, '--body', sendBody, '--connections', '4', '--duration', '5']);
      results.sendProxy = await loadgen(at(ports.ledger), sendArgs(`Bearer ${CLIENT_KEY}`));
      log(`send: direct to fake p50 ${ms(results.sendDirect.p50_ms)} p99 ${ms(results.sendDirect.p99_ms)}; through the Worker p50 ${ms(results.sendProxy.p50_ms)} p99 ${ms(results.sendProxy.p99_ms)}; added p50 ${ms(results.sendProxy.p50_ms - results.sendDirect.p50_ms)} (non-2xx ${results.sendProxy.non2xx})`);
      const optouts = Array.from({ length: 1000 }, (_, i) => `+1555${String(8000000 + i)}`);
      for (let i = 0; i < optouts.length; i += 50) {
        await Promise.all(optouts.slice(i, i + 50).map((number) => fetch(`http://${at(ports.ledger)}/optouts`, {
          method: 'POST', headers: { Authorization: `Bearer ${API_TOKEN}` }, body: JSON.stringify({ number, note: 'bench' }),
        }).then((r) => r.arrayBuffer())));
      }
      results.sendProxyOptOuts = await loadgen(at(ports.ledger), sendArgs(`Bearer ${CLIENT_KEY}`));
      log(`send with ${optouts.length} opt-outs in the book: p50 ${ms(results.sendProxyOptOuts.p50_ms)} p99 ${ms(results.sendProxyOptOuts.p99_ms)}; added p50 ${ms(results.sendProxyOptOuts.p50_ms - results.sendDirect.p50_ms)} (non-2xx ${results.sendProxyOptOuts.non2xx})`);
      const overrideBody = JSON.stringify({ to: ['+15552220001'], from: '+15551110000', text: 'bench', optOutOverride: true });
      results.sendOverride = await loadgen(at(ports.ledger), sendArgs(`Bearer ${API_TOKEN}`, overrideBody));
      log(`operator send with optOutOverride (guard only, no book): p50 ${ms(results.sendOverride.p50_ms)} p99 ${ms(results.sendOverride.p99_ms)}; added p50 ${ms(results.sendOverride.p50_ms - results.sendDirect.p50_ms)} (non-2xx ${results.sendOverride.non2xx})`);
      if (results.sendProxy.non2xx + results.sendProxyOptOuts.non2xx + results.sendOverride.non2xx > 0) process.exitCode = 1;
    };
    if (ONLY_SEND) {
      await measureSend();
      return;
    }
    if (ONLY_COST) {
      await measureCost();
      printCost(results.cost.ledger.mixCpuMsPerCallback, results.cost.peer.mixCpuMsPerCallback, 'the mix runs themselves, metered ledger');
      if (results.cost.failed > 0) process.exitCode = 1;
      return;
    }

    // Warm up all three.
    for (const [p, path] of [[ports.emptyJs, '/'], [ports.emptyRust, '/']]) await loadgen(at(p), ['--path', path, '--duration', '2', '--connections', String(CONNECTIONS)]);
    const warm = await loadgen(at(ports.ledger), ['--auth', AUTH, '--duration', '2', '--connections', String(CONNECTIONS), '--prefix', 'warm', ...ackedFile('warm')]);
    results.warm = warm;
    acked += warm.ok;

    const full = async (port, extra) => {
      const c0 = cpu();
      const r = await loadgen(at(port), ['--duration', String(SECONDS), '--connections', String(CONNECTIONS), ...extra]);
      r.cpuMsPerRequest = ((cpu() - c0) * 1000) / Math.max(1, r.ok + r.non2xx);
      return r;
    };
    results.emptyJs = await full(ports.emptyJs, ['--path', '/']);
    results.emptyRust = await full(ports.emptyRust, ['--path', '/']);
    await loadgen(at(ports.peer), ['--path', '/', '--duration', '2', '--connections', String(CONNECTIONS), '--prefix', 'peer-warm']);
    results.peer = await full(ports.peer, ['--path', '/', '--prefix', 'peer']);
    results.ledger = await full(ports.ledger, ['--auth', AUTH, '--prefix', 'full', ...ackedFile('full')]);
    acked += results.ledger.ok;
    const half = results.ledger.rps / 2;
    results.ledgerHalf = await full(ports.ledger, ['--auth', AUTH, '--prefix', 'half', '--rate', String(half), ...ackedFile('half')]);
    acked += results.ledgerHalf.ok;
    results.emptyJsHalf = await full(ports.emptyJs, ['--path', '/', '--rate', String(half)]);
    // The same offered load on the JS peer: the tail of the simplest
    // Worker with a Durable Object write, for comparison.
    results.peerHalf = await full(ports.peer, ['--path', '/', '--prefix', 'peer-half', '--rate', String(half)]);
    for (const [k, r] of Object.entries({ 'empty JS (ceiling)': results.emptyJs, 'empty Rust': results.emptyRust, 'JS peer (1 insert)': results.peer, ledger: results.ledger })) {
      log(`${k.padEnd(20)} ${r.rps.toFixed(0).padStart(7)} callbacks/s  p50 ${ms(r.p50_ms)}  p99 ${ms(r.p99_ms)}  workerd CPU ${r.cpuMsPerRequest.toFixed(3)} ms/request  (non-2xx ${r.non2xx}, errors ${r.errors})`);
    }
    results.ratio = results.ledger.rps / results.emptyJs.rps;
    results.ratioPeer = results.ledger.rps / results.peer.rps;
    results.ratioRust = results.emptyRust.rps / results.emptyJs.rps;
    log(`ratio ledger / ceiling: ${(results.ratio * 100).toFixed(1)}%   (empty Rust / ceiling: ${(results.ratioRust * 100).toFixed(1)}%)`);
    log(`ledger / JS peer (one insert per callback): ${results.ratioPeer.toFixed(2)}`);
    log(`at half the ledger's full rate (${half.toFixed(0)}/s): ledger p50 ${ms(results.ledgerHalf.p50_ms)} p99 ${ms(results.ledgerHalf.p99_ms)} (p99.9 ${ms(results.ledgerHalf.p999_ms)}, max ${ms(results.ledgerHalf.max_ms)}); ceiling p50 ${ms(results.emptyJsHalf.p50_ms)} p99 ${ms(results.emptyJsHalf.p99_ms)}; JS peer p50 ${ms(results.peerHalf.p50_ms)} p99 ${ms(results.peerHalf.p99_ms)}`);

    // Acknowledged versus stored, id by id: the ids loadgen saw acknowledged
    // against the message ids GET /export streams back.
    const count = async () => (await (await fetch(`http://${at(ports.ledger)}/api/v2/users/${ACCOUNT}/messages?limit=1`, { headers: { Authorization: `Bearer ${API_TOKEN}` } })).json()).totalCount;
    const ackedIds = new Set(ackedFiles.flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean)));
    const storedIds = new Set();
    {
      const r = await fetch(`http://${at(ports.ledger)}/export`, { headers: { Authorization: `Bearer ${API_TOKEN}` } });
      let rest = '';
      for await (const chunk of r.body.pipeThrough(new TextDecoderStream())) {
        const lines = (rest + chunk).split('\n');
        rest = lines.pop();
        for (const l of lines) storedIds.add(JSON.parse(l).messageId);
      }
    }
    results.acknowledged = ackedIds.size;
    results.stored = storedIds.size;
    results.missing = [...ackedIds].filter((id) => !storedIds.has(id));
    results.unacknowledgedStored = [...storedIds].filter((id) => !ackedIds.has(id)).length;
    if (acked !== ackedIds.size) log(`loadgen counted ${acked} acknowledgements but listed ${ackedIds.size} ids`);
    log(`acknowledged ${ackedIds.size}, stored ${storedIds.size}, acknowledged but missing ${results.missing.length}${results.missing.length ? ': ' + results.missing.slice(0, 20).join(', ') : ''}; stored without an acknowledgement ${results.unacknowledgedStored} (half-rate run: non-2xx ${results.ledgerHalf.non2xx}, errors ${results.ledgerHalf.errors}; warm-up: non-2xx ${warm.non2xx}, errors ${warm.errors})`);
    if (ONLY_INGEST) {
      if (results.missing.length > 0) process.exitCode = 1;
      return;
    }
    await measureCost();
    printCost(results.ledger.cpuMsPerRequest, results.peer.cpuMsPerRequest, 'the full-load runs');

    const wasm = readFileSync(join(LEDGER_BUILD, 'index_bg.wasm'));
    results.wasmRaw = wasm.length;
    results.wasmGzip = gzipSync(wasm, { level: 9 }).length;
    log(`wasm: ${(results.wasmRaw / 1024).toFixed(0)} KiB raw, ${(results.wasmGzip / 1024).toFixed(0)} KiB gzipped`);

    await measureSend();
    // What one Worker-to-object round trip with one durable insert takes at
    // the same 4 connections (the JS peer): a send makes two (its key's
    // guard, then the ledger shard) around the upstream call.
    results.peerOne = await loadgen(at(ports.peer), ['--path', '/', '--prefix', 'peer-rt', '--connections', '4', '--duration', '5']);
    log(`one object round trip with one insert (JS peer, 4 connections): p50 ${ms(results.peerOne.p50_ms)} p99 ${ms(results.peerOne.p99_ms)}`);

    // List Messages with LIST_MESSAGES stored messages.
    let stored = await count();
    if (stored < LIST_MESSAGES) {
      const top = await loadgen(at(ports.ledger), ['--auth', AUTH, '--prefix', 'fill', '--total', String(LIST_MESSAGES - stored), '--connections', String(CONNECTIONS)]);
      acked += top.ok;
      stored = await count();
    }
    results.listStored = stored;
    const get = async (q) => { const r = await fetch(`http://${at(ports.ledger)}/api/v2/users/${ACCOUNT}/messages?${q}`, { headers: { Authorization: `Bearer ${API_TOKEN}` } }); const j = await r.json(); if (r.status !== 200) throw new Error(JSON.stringify(j)); return j; };
    let token = (await get('limit=100')).pageInfo.nextPageToken;
    for (let i = 0; i < 9; i++) token = (await get(`limit=100&pageToken=${token}`)).pageInfo.nextPageToken;
    results.listFirst = await timeRequests(30, () => get('limit=100'));
    results.listDeep = await timeRequests(30, () => get(`limit=100&pageToken=${token}`));
    results.listFiltered = await timeRequests(30, () => get('limit=100&messageStatus=DELIVERED&destinationTn=%2B15552220001'));
    log(`list page of 100 with ${stored} messages: first p50 ${ms(results.listFirst.p50)} p99 ${ms(results.listFirst.p99)}; 11th page p50 ${ms(results.listDeep.p50)} p99 ${ms(results.listDeep.p99)}; filtered p50 ${ms(results.listFiltered.p50)} p99 ${ms(results.listFiltered.p99)}`);
    const rss = () => Number(execSync(`ps -o rss= -p ${wd.child.pid}`).toString().trim()) * 1024;
    // Export: every stored message as NDJSON, streamed shard by shard in
    // pages; workerd's RSS is sampled while it streams.
    {
      const rssBefore = rss();
      let rssPeak = rssBefore;
      const sampler = setInterval(() => { try { rssPeak = Math.max(rssPeak, rss()); } catch { /* gone */ } }, 200);
      const t0 = performance.now();
      const r = await fetch(`http://${at(ports.ledger)}/export`, { headers: { Authorization: `Bearer ${API_TOKEN}` } });
      let lines = 0;
      let bytes = 0;
      for await (const chunk of r.body) {
        bytes += chunk.length;
        for (const b of chunk) if (b === 10) lines += 1;
      }
      const seconds = (performance.now() - t0) / 1000;
      clearInterval(sampler);
      results.export = { status: r.status, messages: lines, seconds, perSecond: lines / seconds, mib: bytes / 1048576, rssBeforeMiB: rssBefore / 1048576, rssPeakMiB: rssPeak / 1048576 };
      log(`export (NDJSON) of ${lines} messages (${results.export.mib.toFixed(0)} MiB): ${results.export.perSecond.toFixed(0)} messages/s; workerd RSS ${results.export.rssBeforeMiB.toFixed(0)} MiB before, peak ${results.export.rssPeakMiB.toFixed(0)} MiB while streaming`);
      if (r.status !== 200 || lines < stored) process.exitCode = 1;
    }
    // Live subscribers: memory per idle subscriber, and callback-to-subscriber delay.
    const open = () => new Promise((res, rej) => {
      const ws = new WebSocket(`ws://${at(ports.ledger)}/live`, ['bw-ledger', `token.${API_TOKEN}`]);
      ws.on('open', () => res(ws));
      ws.on('error', rej);
    });
    const before = rss();
    const subs = [];
    for (let i = 0; i < 500; i++) subs.push(await open());
    await new Promise((r) => setTimeout(r, 1000));
    results.liveKiBPerSubscriber = (rss() - before) / 500 / 1024;
    const delays = [];
    for (let i = 0; i < 20; i++) {
      const id = `live-delay-${i}`;
      const got = new Promise((res) => subs[0].on('message', function onMsg(m) { if (m.toString().includes(id)) { subs[0].off('message', onMsg); res(); } }));
      const t0 = performance.now();
      await fetch(`http://${at(ports.ledger)}/callbacks/bandwidth`, { method: 'POST', headers: { Authorization: AUTH }, body: JSON.stringify([{ type: 'message-sent', time: '2026-11-20T15:04:05Z', to: '+15552220001', message: { id, direction: 'out', from: '+15551110000', to: ['+15552220001'] } }]) });
      await got;
      delays.push(performance.now() - t0);
    }
    results.liveDelay = percentiles(delays);
    for (const s of subs) s.terminate();
    log(`live: ${results.liveKiBPerSubscriber.toFixed(1)} KiB per idle subscriber (500 open, workerd RSS); callback to subscriber (with 500 connected) p50 ${ms(results.liveDelay.p50)} p99 ${ms(results.liveDelay.p99)}`);
  } finally {
    await wd.stop();
    if (ONLY_INGEST || ONLY_COST || ONLY_SEND) {
      await fake.close();
      rmSync(storage, { recursive: true, force: true });
    }
  }
  if (ONLY_INGEST || ONLY_COST || ONLY_SEND) return;

  // Crash-restart, longer form, under plain workerd.
  const crashStorage = join(OUT, `crash-${Date.now()}`);
  const crashPorts = { ledger: await freePort(), emptyJs: await freePort(), emptyRust: await freePort() };
  const crashConfig = writeConfig(join(OUT), { ports: crashPorts, vars, storage: crashStorage, emptyRustBuild: join(ROOT, 'bench/empty-rust/build') });
  results.crash = await crashRestart({
    start: async () => {
      const w = await startWorkerd(crashConfig, crashPorts.ledger, join(OUT, 'workerd-crash.log'));
      return { url: `http://${at(crashPorts.ledger)}`, persistDir: crashStorage, kill: () => w.kill(), stop: () => w.stop() };
    },
    kills: CRASH_KILLS, senders: 16, auth: AUTH, apiToken: API_TOKEN,
  });
  const c = results.crash;
  log(`crash-restart: ${c.kills} SIGKILLs, ${c.attempted} callbacks sent, ${c.acknowledged} acknowledged before their kill, all resent after it (${c.resent}; non-2xx or errors on resend ${c.resendErrors}); acknowledged before a kill but absent after the restart ${c.lostAcked.length}; missing after the resends ${c.lost}${c.lost ? ': ' + c.missing.slice(0, 20).join(', ') : ''}, duplicated ${c.duplicated}; unacknowledged before the kill and present after the resend ${c.unackedPresent} of ${c.unacknowledged}`);
  await fake.close();

  // Fuzzing, longer form.
  let fuzz = '';
  try {
    fuzz = execSync(`cargo test --release -p bw-ledger-core --test fuzz -- --nocapture --test-threads 1`, { cwd: ROOT, env: { ...process.env, FUZZ_CASES: String(FUZZ_CASES) }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    // A fuzz failure is a finding: report it, write the rest, exit non-zero.
    fuzz = String(e.stdout ?? '');
    const minimal = String(e.stdout ?? '').match(/minimal failing input[\s\S]{0,400}/)?.[0] ?? 'see cargo test output';
    log(`FUZZ FAILURE: ${minimal}`);
    process.exitCode = 1;
  }
  // Every strategy, passed or failed: cargo's "test <name> ..." lines, and
  // the names it lists under its final "failures:", with the inputs each
  // passing strategy tried.
  const tried = Object.fromEntries([...fuzz.matchAll(/fuzz ([^:\n]+): (\d+) inputs tried/g)].map((m) => [m[1], Number(m[2])]));
  const failedNames = /^failures:\s*$/m.test(fuzz) ? [...fuzz.split(/^failures:\s*$/m).at(-1).matchAll(/^ {4}(\S+)\s*$/gm)].map((m) => m[1]) : [];
  results.fuzzStrategies = [...fuzz.matchAll(/^test (\S+) \.\.\. /gm)].map((m) => ({ test: m[1], passed: !failedNames.includes(m[1]) }));
  results.fuzzInputs = Object.values(tried).reduce((a, b) => a + b, 0);
  results.fuzz = Object.entries(tried).map(([name, n]) => `fuzz ${name}: ${n} inputs tried, no panic`);
  results.fuzzFailed = results.fuzzStrategies.filter((s) => !s.passed).map((s) => s.test);
  if (results.fuzzStrategies.length === 0) results.fuzzFailed.push('(the fuzz test did not run: see the cargo output above)');
  for (const l of results.fuzz) log(l);
  for (const f of results.fuzzFailed) log(`FUZZ STRATEGY FAILED: ${f}`);
  if (results.fuzzFailed.length > 0) process.exitCode = 1;

  rmSync(storage, { recursive: true, force: true });
  rmSync(crashStorage, { recursive: true, force: true });
  writeResults(results);
  const targets = {
    ratio30: results.ratio >= 0.3,
    p99Half50: results.ledgerHalf.p99_ms < 50,
    ackedEqualsStored: results.missing.length === 0,
    crashClean: c.lost === 0 && c.duplicated === 0 && c.lostAcked.length === 0,
  };
  log(`targets: ingest >= 30% of ceiling: ${targets.ratio30 ? 'met' : 'NOT met'}; p99 < 50 ms at half rate: ${targets.p99Half50 ? 'met' : 'NOT met'}; acknowledged == stored: ${targets.ackedEqualsStored ? 'yes' : 'NO'}; crash lost/duplicated 0: ${targets.crashClean ? 'yes' : 'NO'}`);
  if (!targets.ackedEqualsStored || !targets.crashClean) process.exitCode = 1;
}

function writeResults(r) {
  const row = (name, x) => `| ${name} | ${x.rps.toFixed(0)} | ${x.p50_ms.toFixed(2)} | ${x.p99_ms.toFixed(2)} | ${x.cpuMsPerRequest.toFixed(3)} | ${x.non2xx} | ${x.errors} |`;
  const fuzzLine = r.fuzzFailed.length
    ? `**FAILED strategies: ${r.fuzzFailed.join(', ')}** (see the bench output); passed: ${r.fuzz.map((l) => l.replace(/^fuzz /, '')).join('; ') || 'none'}`
    : `${r.fuzzInputs} inputs in all, every strategy passed: ${r.fuzz.map((l) => l.replace(/^fuzz /, '')).join('; ')}`;
  const md = `# Bench results

Latest run of \`npm run bench\` (${r.date}), on this machine: ${r.nproc} cores, ${r.memGiB} GiB.
Every Worker below (and the metered ledger of the cost section) ran in one plain workerd process (no wrangler dev proxy), loaded by
\`bw-ledger-loadgen\` with ${r.connections} keep-alive connections for ${r.seconds} s each.

| target | callbacks/s | p50 ms | p99 ms | workerd CPU ms per callback | non-2xx | errors |
|---|---|---|---|---|---|---|
${row('empty JS Worker (ceiling)', r.emptyJs)}
${row('empty Rust Worker', r.emptyRust)}
${row('hand-written JS peer (one INSERT per callback, 16 shards)', r.peer)}
${row('ledger (durable ingest)', r.ledger)}
${row('ledger at half rate (open loop)', r.ledgerHalf)}
${row('empty JS Worker at half rate', r.emptyJsHalf)}
${row('hand-written JS peer at the same rate', r.peerHalf)}

Ledger shards: ${r.shards}. Warm-up run (ledger): non-2xx ${r.warm.non2xx}, errors ${r.warm.errors}.

- Ledger / ceiling: **${(r.ratio * 100).toFixed(1)}%** (target: at least 30%). Empty Rust / ceiling: ${(r.ratioRust * 100).toFixed(1)}%.
- Ledger / hand-written JS peer: **${r.ratioPeer.toFixed(2)}** (same run).

## What is billed: the realistic mix

${r.cost.callbacks} callbacks: for each of ${MIX_MESSAGES} outbound messages its \`message-sending\`, \`message-sent\` and
\`message-delivered\`, each its own callback, and one inbound \`message-received\` for every three outbound; fresh ids.
Rows are SQLite's own per-statement counts (\`rowsWritten\`, \`rowsRead\` of every cursor of every ledger shard,
added up by \`bench/meter-shim.mjs\` around the same build); non-2xx: ${r.cost.failed}.

- **rows written per callback: ${r.cost.ledger.rowsWrittenPerCallback.toFixed(2)}** (JS peer: ${r.cost.peer.rowsWrittenPerCallback.toFixed(2)}); rows read ${r.cost.ledger.rowsReadPerCallback.toFixed(2)}; SQL statements ${r.cost.ledger.statementsPerCallback.toFixed(2)}; object requests ${r.cost.ledger.objectRequestsPerCallback.toFixed(3)} (shared by group commit).
- Cost per million callbacks at list prices, ledger: ${costLine(r.cost.ledger.cost)}.
- Cost per million callbacks, JS peer: ${costLine(r.cost.peer.cost)}.
- CPU per callback from ${r.cost.cpuSource}; prices: Worker requests $0.30, object requests $0.15, CPU $0.02 per million ms, rows written $1.00, rows read $0.001, per million.

## Other figures

- At half the ledger's full rate (${(r.ledger.rps / 2).toFixed(0)}/s, open loop): ledger p50 ${r.ledgerHalf.p50_ms.toFixed(2)} ms, p99 **${r.ledgerHalf.p99_ms.toFixed(2)} ms** (target: under 50 ms; p99.9 ${r.ledgerHalf.p999_ms.toFixed(2)} ms, max ${r.ledgerHalf.max_ms.toFixed(2)} ms); ceiling p50 ${r.emptyJsHalf.p50_ms.toFixed(2)} ms, p99 ${r.emptyJsHalf.p99_ms.toFixed(2)} ms; hand-written JS peer at the same rate p50 ${r.peerHalf.p50_ms.toFixed(2)} ms, p99 ${r.peerHalf.p99_ms.toFixed(2)} ms.
- Acknowledged ${r.acknowledged} callbacks (ids listed by the load generator), stored ${r.stored} (ids read back through \`GET /export\`): **${r.missing.length} acknowledged but missing**${r.missing.length ? ` (${r.missing.slice(0, 50).join(', ')})` : ''}; ${r.unacknowledgedStored} stored without a 2xx.
- wasm: ${r.wasmRaw} bytes raw, ${r.wasmGzip} bytes gzipped.
- Send proxy, 4 connections: direct to the local fake p50 ${r.sendDirect.p50_ms.toFixed(2)} / p99 ${r.sendDirect.p99_ms.toFixed(2)} ms; through the Worker p50 ${r.sendProxy.p50_ms.toFixed(2)} / p99 ${r.sendProxy.p99_ms.toFixed(2)} ms (added p50 ${(r.sendProxy.p50_ms - r.sendDirect.p50_ms).toFixed(2)} ms); with 1,000 opt-outs in the book p50 ${r.sendProxyOptOuts.p50_ms.toFixed(2)} / p99 ${r.sendProxyOptOuts.p99_ms.toFixed(2)} ms (added p50 ${(r.sendProxyOptOuts.p50_ms - r.sendDirect.p50_ms).toFixed(2)} ms); an operator send with \`optOutOverride\` (the guard, no opt-out check) p50 ${r.sendOverride.p50_ms.toFixed(2)} / p99 ${r.sendOverride.p99_ms.toFixed(2)} ms. For scale, one Worker-to-object round trip with one durable insert (the JS peer, 4 connections): p50 ${r.peerOne.p50_ms.toFixed(2)} / p99 ${r.peerOne.p99_ms.toFixed(2)} ms; a send makes three (the key's guard and the opt-out book at the same time, then the ledger shard).
- List Messages, page of 100 with ${r.listStored} stored messages: first page p50 ${r.listFirst.p50.toFixed(1)} / p99 ${r.listFirst.p99.toFixed(1)} ms; 11th page p50 ${r.listDeep.p50.toFixed(1)} / p99 ${r.listDeep.p99.toFixed(1)} ms; filtered p50 ${r.listFiltered.p50.toFixed(1)} / p99 ${r.listFiltered.p99.toFixed(1)} ms.
- Export (NDJSON, \`GET /export\`) of ${r.export.messages} messages (${r.export.mib.toFixed(0)} MiB): ${r.export.perSecond.toFixed(0)} messages/s; workerd RSS ${r.export.rssBeforeMiB.toFixed(0)} MiB before, peak ${r.export.rssPeakMiB.toFixed(0)} MiB while streaming.
- Live: ${r.liveKiBPerSubscriber.toFixed(1)} KiB of workerd memory per idle subscriber (500 open); callback to subscriber delay with 500 connected p50 ${r.liveDelay.p50.toFixed(1)} / p99 ${r.liveDelay.p99.toFixed(1)} ms.
- Crash-restart under workerd: ${r.crash.kills} SIGKILLs; ${r.crash.attempted} callbacks sent, ${r.crash.acknowledged} acknowledged before their kill, every one sent before a kill sent again after the restart (${r.crash.resent} resends, ${r.crash.resendErrors} non-2xx or errors on the way); **acknowledged before a kill but absent after the restart ${r.crash.lostAcked.length}${r.crash.lostAcked.length ? ` (${r.crash.lostAcked.slice(0, 50).join(', ')})` : ''}; missing after the resends ${r.crash.lost}, duplicated ${r.crash.duplicated}**${r.crash.lost ? ` (${r.crash.missing.slice(0, 50).join(', ')})` : ''}; unacknowledged before the kill and present after the resend: ${r.crash.unackedPresent} of ${r.crash.unacknowledged}.
- Fuzzing (release): ${fuzzLine}.

Command: \`npm run bench\` (environment: BENCH_SECONDS=${r.seconds}, BENCH_CONNECTIONS=${r.connections}).
See [README.md](README.md) for where the time goes and what was decided.
`;
  writeFileSync(join(ROOT, 'bench/RESULTS.md'), md);
}

main().catch((e) => { console.error(e); process.exit(1); });
