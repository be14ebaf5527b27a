// What every measurement of the bench shares: its settings (environment
// knobs), the credentials of the bench's ledger, and small helpers.
import { join } from 'node:path';
import { ROOT } from './workerd.mjs';

export const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
export const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
export const LIST_MESSAGES = Number(process.env.BENCH_LIST_MESSAGES ?? 100_000);
export const CRASH_KILLS = Number(process.env.BENCH_CRASH_KILLS ?? 20);
// Per strategy; four strategies, so 1,000,000 inputs by default.
export const FUZZ_CASES = Number(process.env.BENCH_FUZZ_CASES ?? 250_000);
// LEDGER_SHARDS for the bench's ledger (wrangler.toml's value by default).
export const SHARDS = process.env.BENCH_SHARDS;
// BENCH_ONLY=ingest: the three ingest runs and the acknowledged/stored count
// only, for iterating on the ingest path; RESULTS.md is not written.
export const ONLY_INGEST = process.env.BENCH_ONLY === 'ingest';
// BENCH_ONLY=cost: only the realistic mix's rows written and the cost
// per million callbacks (ledger and JS peer); RESULTS.md is not written.
export const ONLY_COST = process.env.BENCH_ONLY === 'cost';
// BENCH_ONLY=send: only the send proxy's added latency (without and with
// opt-outs in the book, and the operator's override that skips the book);
// RESULTS.md is not written.
export const ONLY_SEND = process.env.BENCH_ONLY === 'send';
// BENCH_ONLY=scale: callbacks/s at 1, 2, 4, 8 and 16 shards, every ledger
// shard capped at BENCH_OBJECT_RPS requests/s (bench/cap-shim.mjs), with
// BENCH_SCALE_CONNECTIONS concurrent callbacks per shard, then the count
// changed 8 → 16 → 12 under load (measure/scale.mjs); RESULTS.md is not
// written (about four minutes).
export const ONLY_SCALE = process.env.BENCH_ONLY === 'scale';
export const OBJECT_RPS = Number(process.env.BENCH_OBJECT_RPS ?? 3);
export const SCALE_CONNECTIONS = Number(process.env.BENCH_SCALE_CONNECTIONS ?? 16);
// `BENCH_ONLY=profile`: only the CPU per callback by phase (about a minute).
export const ONLY_PROFILE = process.env.BENCH_ONLY === 'profile';
// Outbound messages in the realistic mix (3 callbacks each, plus one inbound
// message for every three outbound).
export const MIX_MESSAGES = Number(process.env.BENCH_MIX_MESSAGES ?? 1500);
// Cloudflare's list prices, USD per million (Workers Paid, after the included use).
export const PRICE = { workerRequests: 0.30, objectRequests: 0.15, cpuMs: 0.02, rowsWritten: 1.00, rowsRead: 0.001 };
export const OUT = join(ROOT, 'bench/out');
export const ACCOUNT = '9900000';
export const CLIENT_KEY = 'bench-client-key';
export const AUTH = 'Basic ' + Buffer.from('bench:bench-pass').toString('base64');
export const API_TOKEN = 'bench-api-token';

export const log = (...a) => console.log(...a);
export const ms = (v) => `${v.toFixed(2)} ms`;

export function percentiles(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p) => s[Math.min(s.length - 1, Math.round((p / 100) * (s.length - 1)))];
  return { p50: at(50), p99: at(99) };
}

export async function timeRequests(n, fn) {
  const samples = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn(i);
    samples.push(performance.now() - t0);
  }
  return percentiles(samples);
}

/** A callback of the realistic mix: one event of message `id`. */
export function mixCallback(type, id, n) {
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
export async function realisticMix(base, { outbound, concurrency = 16, auth, prefix }) {
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
export function costPerMillion({ objectRequestsPerCallback, cpuMsPerCallback, rowsWrittenPerCallback, rowsReadPerCallback }) {
  const items = {
    workerRequests: PRICE.workerRequests,
    objectRequests: objectRequestsPerCallback * PRICE.objectRequests,
    cpu: cpuMsPerCallback * PRICE.cpuMs,
    rowsWritten: rowsWrittenPerCallback * PRICE.rowsWritten,
    rowsRead: rowsReadPerCallback * PRICE.rowsRead,
  };
  return { ...items, total: Object.values(items).reduce((a, b) => a + b, 0) };
}

export const usd = (v) => `$${v.toFixed(3)}`;
export const costLine = (c) => `Worker requests ${usd(c.workerRequests)} + object requests ${usd(c.objectRequests)} + CPU ${usd(c.cpu)} + rows written ${usd(c.rowsWritten)} + rows read ${usd(c.rowsRead)} = ${usd(c.total)}`;

