// Bench only: the ledger's own build, unchanged, with every SQL statement
// of every ledger shard metered. SQLite reports, per cursor, the rows it
// wrote (each table and index entry: what Cloudflare bills) and read; the
// shim adds them up, and counts the shards' requests and alarms.
// GET /__meter answers the totals. The throughput figures never run this.
import Ledger, * as built from './index.js';

export * from './index.js';

const totals = { rowsWritten: 0, rowsRead: 0, statements: 0, objectRequests: 0, alarms: 0, byStatement: {} };
const pending = [];

/** A statement's name in the breakdown: its first words, whitespace folded. */
const nameOf = (sql) => String(sql).replace(/\s+/g, ' ').trim().slice(0, 90);

function flush() {
  for (const [sql, cursor] of pending) {
    totals.rowsWritten += cursor.rowsWritten;
    totals.rowsRead += cursor.rowsRead;
    const s = (totals.byStatement[nameOf(sql)] ??= { runs: 0, rowsWritten: 0, rowsRead: 0 });
    s.runs += 1;
    s.rowsWritten += cursor.rowsWritten;
    s.rowsRead += cursor.rowsRead;
  }
  pending.length = 0;
}

export class LedgerShard extends built.LedgerShard {
  constructor(ctx, env) {
    const sql = ctx.storage.sql;
    const exec = sql.exec.bind(sql);
    sql.exec = (...args) => {
      const cursor = exec(...args);
      totals.statements += 1;
      pending.push([args[0], cursor]);
      return cursor;
    };
    super(ctx, env);
  }

  async fetch(request) {
    totals.objectRequests += 1;
    try { return await super.fetch(request); } finally { flush(); }
  }

  async alarm(...args) {
    totals.alarms += 1;
    try { return await super.alarm(...args); } finally { flush(); }
  }
}

export default class extends Ledger {
  async fetch(request) {
    if (new URL(request.url).pathname === '/__meter') {
      flush();
      return Response.json(totals);
    }
    return super.fetch(request);
  }
}
