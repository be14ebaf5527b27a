// `npm run bench`: throughput and latency of durable callback ingest under
// plain workerd, against empty Workers in the same workerd, plus the send
// proxy's added latency, list-page latency at 100,000 messages, a longer
// crash-restart run and a longer fuzz run. Prints every figure and writes
// bench/RESULTS.md. Each measurement is its own module in bench/measure/;
// this file starts the runtime they share and runs them in order.
//
// Every measurement gets `ctx`: `results` (what RESULTS.md is written from),
// the fake Bandwidth, the ports of the Workers in the one workerd process
// and `at(port)`, `cpu()` and `rss()` of that process, the ledger's `vars`,
// `ackedFile(name)` (a loadgen argument listing acknowledged ids) and
// `acked` (acknowledgements counted so far).
import { execSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ROOT, LEDGER_BUILD, freePort, writeConfig, startWorkerd, readWranglerToml, loadgen, removeStorage } from './workerd.mjs';
import { startFakeBandwidth } from '../tests/support/fake-bandwidth.mjs';
import {
  ACCOUNT, API_TOKEN, CLIENT_KEY, CONNECTIONS, ONLY_COST, ONLY_INGEST, ONLY_PROFILE, ONLY_SCALE, ONLY_SEND, OUT, SECONDS, SHARDS, log,
} from './lib.mjs';
import { measureCost, printCost } from './measure/cost.mjs';
import { measureSend } from './measure/send.mjs';
import { ingestTargets, measureIngest } from './measure/ingest.mjs';
import { measureList } from './measure/list.mjs';
import { measureExport } from './measure/export.mjs';
import { measureLive } from './measure/live.mjs';
import { measureCrash } from './measure/crash.mjs';
import { measureFuzz } from './measure/fuzz.mjs';
import { measureProfile } from './measure/profile.mjs';
import { measureScale } from './measure/scale.mjs';
import { writeResults } from './results.mjs';

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
  if (ONLY_PROFILE || ONLY_SCALE) {
    try {
      return await (ONLY_SCALE ? measureScale : measureProfile)({ results, vars });
    } finally {
      await fake.close();
    }
  }
  const config = writeConfig(OUT, { ports, vars, storage, emptyRustBuild: join(ROOT, 'bench/empty-rust/build') });
  const wd = await startWorkerd(config, ports.ledger, join(OUT, 'workerd.log'));
  const ackedFiles = [];
  const ctx = {
    results, fake, ports, vars, ackedFiles, acked: 0,
    at: (p) => `127.0.0.1:${p}`,
    cpu: () => wd.cpuSeconds(),
    rss: () => Number(execSync(`ps -o rss= -p ${wd.child.pid}`).toString().trim()) * 1024,
    ackedFile: (name) => { const f = join(OUT, `acked-${name}.txt`); ackedFiles.push(f); return ['--acked-file', f]; },
  };
  const partial = ONLY_INGEST || ONLY_COST || ONLY_SEND;
  try {
    results.shards = SHARDS ?? readWranglerToml().vars.LEDGER_SHARDS;
    log(`# bench: ${results.date}, ${results.nproc} cores, ${results.memGiB} GiB, ${SECONDS}s runs, ${CONNECTIONS} connections, shards=${results.shards}`);
    if (ONLY_SEND) return await measureSend(ctx);
    if (ONLY_COST) {
      await measureCost(ctx);
      printCost(ctx, results.cost.ledger.mixCpuMsPerCallback, results.cost.peer.mixCpuMsPerCallback, 'the mix runs themselves, metered ledger');
      if (results.cost.failed > 0) process.exitCode = 1;
      return;
    }
    await measureIngest(ctx);
    if (ONLY_INGEST) {
      if (results.missing.length > 0) process.exitCode = 1;
      return;
    }
    await measureCost(ctx);
    printCost(ctx, results.ledger.cpuMsPerRequest, results.peer.cpuMsPerRequest, 'the full-load runs');
    const wasm = readFileSync(join(LEDGER_BUILD, 'index_bg.wasm'));
    results.wasmRaw = wasm.length;
    results.wasmGzip = gzipSync(wasm, { level: 9 }).length;
    log(`wasm: ${(results.wasmRaw / 1024).toFixed(0)} KiB raw, ${(results.wasmGzip / 1024).toFixed(0)} KiB gzipped`);
    await measureSend(ctx);
    // What one Worker-to-object round trip with one durable insert takes at
    // the same 4 connections (the JS peer): a send makes two (its key's
    // guard, then the ledger shard) around the upstream call.
    results.peerOne = await loadgen(ctx.at(ports.peer), ['--path', '/', '--prefix', 'peer-rt', '--connections', '4', '--duration', '5']);
    log(`one object round trip with one insert (JS peer, 4 connections): p50 ${results.peerOne.p50_ms.toFixed(2)} ms p99 ${results.peerOne.p99_ms.toFixed(2)} ms`);
    const stored = await measureList(ctx);
    await measureExport(ctx, stored);
    await measureLive(ctx);
  } finally {
    await wd.stop();
    if (partial) {
      // Where the CPU goes, phase by phase, on every ingest run too.
      if (ONLY_INGEST) await measureProfile(ctx);
      await fake.close();
      removeStorage(storage);
    }
  }
  if (partial) return;
  const crashStorage = await measureCrash(ctx);
  await measureProfile(ctx);
  await fake.close();
  measureFuzz(ctx);
  removeStorage(storage);
  removeStorage(crashStorage);
  writeResults(results);
  reportTargets(results);
}

/** The live targets, met or not; a lost or duplicated callback fails the run. */
function reportTargets(results) {
  const c = results.crash;
  const crashClean = c.lost === 0 && c.duplicated === 0 && c.lostAcked.length === 0;
  const met = ingestTargets(results).map((t) => `${t.name}: ${t.shown} (${t.target}) ${t.met ? 'met' : 'NOT met'}`);
  log(`targets: ${met.join('; ')}; acknowledged == stored: ${results.missing.length === 0 ? 'yes' : 'NO'}; crash lost/duplicated 0: ${crashClean ? 'yes' : 'NO'}`);
  if (results.missing.length > 0 || !crashClean) process.exitCode = 1;
}

main().catch((e) => { console.error(e); process.exit(1); });
