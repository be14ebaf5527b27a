// The hand-written JS peer (#14): what a user would otherwise write. One
// INSERT per callback into one of 16 SQLite-backed Durable Objects, chosen
// by the first event's message id; no dedup, no projection, no outbox.
// It answers 200 only after its object has answered, as the ledger does.
import { DurableObject } from 'cloudflare:workers';

const SHARDS = 16;
// Rows its statements wrote, as SQLite reports them (GET /__meter).
const totals = { rowsWritten: 0, rowsRead: 0 };

function shardOf(id) {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) >>> 0;
  return h % SHARDS;
}

export class PeerShard extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS callbacks (id INTEGER PRIMARY KEY, message_id TEXT, body TEXT NOT NULL)');
  }
  async fetch(request) {
    const body = await request.text();
    const { messageId } = JSON.parse(request.headers.get('x-meta'));
    const cursor = this.ctx.storage.sql.exec('INSERT INTO callbacks (message_id, body) VALUES (?, ?)', messageId, body);
    totals.rowsWritten += cursor.rowsWritten;
    totals.rowsRead += cursor.rowsRead;
    return new Response(null, { status: 204 });
  }
}

export default {
  async fetch(request, env) {
    if (new URL(request.url).pathname === '/__meter') return Response.json(totals);
    const body = await request.text();
    let events;
    try { events = JSON.parse(body); } catch { return new Response('bad json', { status: 400 }); }
    const messageId = String(events?.[0]?.message?.id ?? '');
    const stub = env.PEER.get(env.PEER.idFromName(`peer-${shardOf(messageId)}`));
    const r = await stub.fetch('https://peer/insert', { method: 'POST', body, headers: { 'x-meta': JSON.stringify({ messageId }) } });
    return new Response(null, { status: r.ok ? 200 : 503 });
  },
};
