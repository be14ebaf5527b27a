// List Messages with LIST_MESSAGES stored messages: the first page, the
// 11th (a keyset token) and a filtered page, 100 rows each, 30 times.
import { loadgen } from '../workerd.mjs';
import { ACCOUNT, API_TOKEN, AUTH, CONNECTIONS, LIST_MESSAGES, log, ms, timeRequests } from '../lib.mjs';

export async function measureList(ctx) {
  const { results, at, ports } = ctx;
  const count = async () => (await (await fetch(`http://${at(ports.ledger)}/api/v2/users/${ACCOUNT}/messages?limit=1`, { headers: { Authorization: `Bearer ${API_TOKEN}` } })).json()).totalCount;
  // List Messages with LIST_MESSAGES stored messages.
  let stored = await count();
  if (stored < LIST_MESSAGES) {
    const top = await loadgen(at(ports.ledger), ['--auth', AUTH, '--prefix', 'fill', '--total', String(LIST_MESSAGES - stored), '--connections', String(CONNECTIONS)]);
    ctx.acked += top.ok;
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
  return stored;
}
