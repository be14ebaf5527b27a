// What users pay: the realistic mix against the metered ledger (the same
// build behind bench/meter-shim.mjs, on its own storage) and the JS peer:
// rows written per callback, where they go, and the cost per million.
import { AUTH, MIX_MESSAGES, costLine, costPerMillion, log, realisticMix } from '../lib.mjs';

export async function measureCost({ results, at, ports, cpu }) {
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
}

/** The cost per million callbacks, with CPU per callback from `cpuSource`. */
export function printCost({ results }, ledgerCpuMs, peerCpuMs, cpuSource) {
  const L = results.cost.ledger;
  const P = results.cost.peer;
  L.cost = costPerMillion({ ...L, cpuMsPerCallback: ledgerCpuMs });
  P.cost = costPerMillion({ ...P, cpuMsPerCallback: peerCpuMs });
  results.cost.cpuSource = cpuSource;
  log(`cost per million callbacks, ledger: ${costLine(L.cost)}`);
  log(`cost per million callbacks, JS peer: ${costLine(P.cost)}   (CPU from ${cpuSource})`);
}
