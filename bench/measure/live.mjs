// Live subscribers: memory per idle subscriber, and callback-to-subscriber
// delay with 500 connected.
import WebSocket from 'ws';
import { API_TOKEN, AUTH, log, ms, percentiles } from '../lib.mjs';

export async function measureLive({ results, at, ports, rss }) {
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
}
