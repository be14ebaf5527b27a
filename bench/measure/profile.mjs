// Where a callback's CPU goes, phase by phase: V8 CPU profiles of the
// ledger's isolate under a fresh-message load and under a status-update
// load (three callbacks per message: two in three update a stored
// message), and of the JS peer's isolate under its load, in a workerd of
// their own with the inspector on, so that no other figure is measured
// with a profiler attached. Each phase is in microseconds of the isolate's
// sampled time per acknowledged callback; the process's CPU per callback
// in the same run (profiler attached) is beside it.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, loadgen } from '../workerd.mjs';
import { busyStretches, inspect, phases, startInspectedWorkerd } from '../inspect.mjs';
import { classifyLedger, crossing, LEDGER_PHASES, peerClassifier } from '../phases.mjs';
import { AUTH, CONNECTIONS, OUT, log } from '../lib.mjs';

const SECONDS = Number(process.env.BENCH_PROFILE_SECONDS ?? 6);
// Open loop at this many callbacks/s instead of full load.
const RATE = process.env.BENCH_PROFILE_RATE;

/** Where peer-js.mjs's object class and Worker start (0-based lines). */
function peerLines() {
  const src = readFileSync(join(ROOT, 'bench/peer-js.mjs'), 'utf8').split('\n');
  return { object: src.findIndex((l) => l.startsWith('export class PeerShard')), worker: src.findIndex((l) => l.startsWith('export default')) };
}

export async function measureProfile({ results, vars }) {
  const { ports, inspector, wd, stop } = await startInspectedWorkerd(OUT, vars, { peer: true });
  const cpuMs = () => wd.cpuSeconds() * 1000;
  const at = (p) => `127.0.0.1:${p}`;
  const runs = [
    ['ledger, fresh messages', 'ledger', ports.ledger, ['--auth', AUTH], classifyLedger],
    ['ledger, status updates', 'ledger', ports.ledger, ['--auth', AUTH, '--statuses'], classifyLedger],
    ['JS peer', 'peer-js', ports.peer, ['--path', '/'], peerClassifier(peerLines())],
  ];
  const profiled = {};
  try {
    for (const [label, service, port, args, classify] of runs) {
      await loadgen(at(port), [...args, '--duration', '2', '--connections', String(CONNECTIONS), '--prefix', `warm-${label.length}`]);
      const session = await inspect(inspector, service);
      const c0 = cpuMs();
      const loadArgs = [...args, '--duration', String(SECONDS), '--connections', String(CONNECTIONS), '--prefix', `prof-${label.length}`, ...(RATE ? ['--rate', RATE] : [])];
      const { result: load, profile } = await session.during(() => loadgen(at(port), loadArgs));
      const cpuUsed = cpuMs() - c0;
      session.close();
      // bench/out/<run>.cpuprofile: loadable in Chrome DevTools.
      writeFileSync(join(OUT, `${label.replace(/\W+/g, '-')}.cpuprofile`), JSON.stringify(profile));
      const perCallback = (ms) => (ms * 1000) / Math.max(1, load.ok);
      const measured = [...phases(profile, classify, service === 'ledger' ? crossing : undefined)];
      const byPhase = Object.fromEntries(measured.map(([p, t]) => [p, perCallback(t.ms)]));
      const crossingUs = Object.fromEntries(measured.map(([p, t]) => [p, perCallback(t.crossingMs)]));
      const busy = Object.values(byPhase).reduce((a, b) => a + b, 0);
      const crossed = Object.values(crossingUs).reduce((a, b) => a + b, 0);
      profiled[label] = { load, byPhase, crossingUs, busyUs: busy, crossedUs: crossed, processUs: perCallback(cpuUsed), stretches: busyStretches(profile, 3).map((s) => s.ms) };
    }
  } finally {
    await stop();
  }
  results.profile = profiled;
  printProfile(profiled);
}

/** The phase tables (Markdown, as bench/README.md and RESULTS.md keep them). */
export function printProfile(profiled) {
  for (const line of profileTables(profiled)) log(line);
}

export function profileTables(profiled) {
  const lines = [];
  const log = (l) => lines.push(l);
  const ledgerRuns = Object.keys(profiled).filter((k) => k.startsWith('ledger'));
  const us = (v) => (v === undefined ? '' : v.toFixed(1));
  const order = [...LEDGER_PHASES.map(([p]) => p), 'other JS and wasm', 'runtime: garbage collection', 'runtime: native, outside JS and wasm'];
  const seen = new Set(ledgerRuns.flatMap((k) => Object.keys(profiled[k].byPhase)));
  const cells = (k, phase) => `${us(profiled[k].byPhase[phase])} | ${us(profiled[k].crossingUs[phase] || undefined)}`;
  log(`CPU per callback by phase: µs of the ledger isolate's sampled time per acknowledged callback, and of it in wasm-bindgen's glue (the crossing between wasm and JS); profiler attached, ${SECONDS} s ${RATE ? `at ${RATE} callbacks/s` : 'at full load'}`);
  log('');
  log(`| phase | ${ledgerRuns.map((k) => `${k} | of it, crossing`).join(' | ')} |`);
  log(`|---|${ledgerRuns.map(() => '---:|---:').join('|')}|`);
  for (const phase of order.filter((p) => seen.has(p))) log(`| ${phase} | ${ledgerRuns.map((k) => cells(k, phase)).join(' | ')} |`);
  log(`| **isolate busy, all phases** | ${ledgerRuns.map((k) => `**${us(profiled[k].busyUs)}** | ${us(profiled[k].crossedUs)}`).join(' | ')} |`);
  log(`| workerd process CPU | ${ledgerRuns.map((k) => `${us(profiled[k].processUs)} |`).join(' | ')} |`);
  log(`| callbacks/s (profiler attached) | ${ledgerRuns.map((k) => `${profiled[k].load.rps.toFixed(0)} |`).join(' | ')} |`);
  const peer = profiled['JS peer'];
  if (peer) {
    log('');
    log(`The JS peer, same units:`);
    log('');
    log('| phase | JS peer |');
    log('|---|---:|');
    for (const [phase, v] of Object.entries(peer.byPhase).sort((a, b) => b[1] - a[1])) log(`| ${phase} | ${us(v)} |`);
    log(`| **isolate busy, all phases** | **${us(peer.busyUs)}** |`);
    log(`| workerd process CPU | ${us(peer.processUs)} |`);
    log(`| callbacks/s (profiler attached) | ${peer.load.rps.toFixed(0)} |`);
  }
  log('');
  for (const [k, r] of Object.entries(profiled)) log(`- ${k}: longest busy stretches of the isolate ${r.stretches.map((m) => `${m.toFixed(1)} ms`).join(', ')}`);
  return lines;
}
