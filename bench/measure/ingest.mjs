// Ingest throughput and latency: the ledger, the empty JS and Rust Workers
// and the hand-written JS peer at full load, then the ledger and both at
// half the ledger's rate (open loop); then the acknowledged callbacks
// against the stored ones, id by id.
import { readFileSync } from 'node:fs';
import { loadgen } from '../workerd.mjs';
import { ACCOUNT, API_TOKEN, AUTH, CONNECTIONS, SECONDS, log, ms } from '../lib.mjs';

export async function measureIngest(ctx) {
  const { results, at, ports, cpu, ackedFile, ackedFiles } = ctx;
  // Warm up all three.
  for (const [p, path] of [[ports.emptyJs, '/'], [ports.emptyRust, '/']]) await loadgen(at(p), ['--path', path, '--duration', '2', '--connections', String(CONNECTIONS)]);
  const warm = await loadgen(at(ports.ledger), ['--auth', AUTH, '--duration', '2', '--connections', String(CONNECTIONS), '--prefix', 'warm', ...ackedFile('warm')]);
  results.warm = warm;
  ctx.acked += warm.ok;

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
  ctx.acked += results.ledger.ok;
  const half = results.ledger.rps / 2;
  results.ledgerHalf = await full(ports.ledger, ['--auth', AUTH, '--prefix', 'half', '--rate', String(half), ...ackedFile('half')]);
  ctx.acked += results.ledgerHalf.ok;
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
  if (ctx.acked !== ackedIds.size) log(`loadgen counted ${ctx.acked} acknowledgements but listed ${ackedIds.size} ids`);
  log(`acknowledged ${ackedIds.size}, stored ${storedIds.size}, acknowledged but missing ${results.missing.length}${results.missing.length ? ': ' + results.missing.slice(0, 20).join(', ') : ''}; stored without an acknowledgement ${results.unacknowledgedStored} (half-rate run: non-2xx ${results.ledgerHalf.non2xx}, errors ${results.ledgerHalf.errors}; warm-up: non-2xx ${warm.non2xx}, errors ${warm.errors})`);
}
