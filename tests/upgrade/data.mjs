// The data set of the upgrade fixture (make-fixture.mjs) and the reads
// whose answers must not change across an upgrade. Fixed ids and times, so
// the fixture is the same whenever it is made.
export const ACCOUNT = '9900000';
export const VARS = { LEDGER_SHARDS: '1', BW_ACCOUNT_ID: ACCOUNT };

const OUR = '+15551110000';
const msg = (id, time, to, extra = {}) => ({
  id, owner: OUR, applicationId: 'app', time, segmentCount: 1, direction: 'out', to, from: OUR, text: '', tag: 'upgrade', ...extra,
});
const status = (type, id, time, to, recipients, extra = {}) => ({
  type, time, description: type, to, message: msg(id, '2026-11-20T10:00:00.000Z', recipients), ...extra,
});

export const DATA = [
  // One outbound SMS through sending, sent and delivered.
  [status('message-sending', 'up-sms-1', '2026-11-20T10:00:01.000Z', '+15552220001', ['+15552220001'])],
  [status('message-sent', 'up-sms-1', '2026-11-20T10:00:02.000Z', '+15552220001', ['+15552220001'])],
  [status('message-delivered', 'up-sms-1', '2026-11-20T10:00:03.000Z', '+15552220001', ['+15552220001'], { carrierName: 'Example Mobile' })],
  // The same identity with other content: a conflict, kept aside.
  [status('message-delivered', 'up-sms-1', '2026-11-20T10:00:03.000Z', '+15552220001', ['+15552220001'], { carrierName: 'Other' })],
  // A group MMS: delivered, failed-and-delivered (a contradiction), sending.
  ...(() => {
    const to = ['+15553330001', '+15553330002', '+15553330003'];
    const media = ['https://messaging.bandwidth.com/api/v2/users/9900000/media/up-grp/0/a.png'];
    const s = (type, t, r, extra) => [{ ...status(type, 'up-grp-1', t, r, to, extra), message: msg('up-grp-1', '2026-11-20T11:00:00.000Z', to, { media }) }];
    return [
      s('message-delivered', '2026-11-20T11:00:05.000Z', to[0]),
      s('message-failed', '2026-11-20T11:00:06.000Z', to[1], { errorCode: 4720, description: 'invalid-to-number' }),
      s('message-delivered', '2026-11-20T11:00:07.000Z', to[1]),
      s('message-sending', '2026-11-20T11:00:04.000Z', to[2]),
    ];
  })(),
  // Inbound: a text with quotes and a newline, and an MMS.
  [{ type: 'message-received', time: '2026-11-20T12:00:00.000Z', description: 'Incoming message received', to: OUR,
    message: { id: 'up-in-1', owner: OUR, applicationId: 'app', time: '2026-11-20T12:00:00.000Z', segmentCount: 1, direction: 'in',
      to: [OUR], from: '+15554440001', text: 'he said "hi"\nthen left' } }],
  [{ type: 'message-received', time: '2026-11-20T12:05:00.000Z', description: 'Incoming message received', to: OUR,
    message: { id: 'up-in-mms', owner: OUR, applicationId: 'app', time: '2026-11-20T12:05:00.000Z', segmentCount: 1, direction: 'in',
      to: [OUR], from: '+15554440002', text: '', media: ['https://messaging.bandwidth.com/api/v2/users/9900000/media/up-in/0/cat.jpg'] } }],
  // A failed outbound SMS with its error code.
  [status('message-failed', 'up-sms-2', '2026-11-20T13:00:01.000Z', '+15552220002', ['+15552220002'], { errorCode: 9902, description: 'receipt-expired' })],
  // Not JSON: quarantined byte for byte.
  'upgrade: not a callback',
];

const list = `/api/v2/users/${ACCOUNT}/messages`;
export const READS = [
  '/messages/up-sms-1', '/messages/up-grp-1', '/messages/up-in-1', '/messages/up-in-mms', '/messages/up-sms-2',
  list,
  `${list}?include=content`,
  `${list}?messageStatus=FAILED`,
  `${list}?sourceTn=%2B1555444`,
  `${list}?destinationTn=%2B15553330002&include=content`,
  `${list}?messageDirection=INBOUND&sort=receiveTime:asc`,
  `${list}?limit=2`,
  `${list}?errorCode=4720`,
  '/conversations?number=%2B15551110000&with=%2B15554440001',
  '/quarantine',
  '/export',
  '/export?format=csv',
];
