#!/usr/bin/env node
// speakerswitch from JavaScript, as a mediasoup-style media server would call it: stream a
// room's RFC 6464 levels (here read from a levels.csv, t_ms,participant,level,voice) and
// print each video switch as a JSON line. One request per 20 ms tick in the compact
// roster form (one header byte per participant), the roster sent only when it changes.
//
//   node client.js --server 127.0.0.1:50051 --levels levels.csv [--room demo] [--token T]
'use strict';
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function args(argv) {
  const out = { server: '127.0.0.1:50051', room: 'node-demo', token: process.env.SPEAKERSWITCH_TOKEN };
  for (let i = 2; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1];
  if (!out.levels) throw new Error('--levels FILE.csv is required');
  return out;
}

function readLevels(file) {
  // -> [{t, roster: [...], bytes: Buffer}], one per packet time
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
  if (lines[0].trim() !== 't_ms,participant,level,voice') throw new Error(`${file}: bad header`);
  const byTime = new Map();
  for (const line of lines.slice(1)) {
    const [t, pid, level, voice] = line.split(',');
    const key = Number(t);
    if (!byTime.has(key)) byTime.set(key, []);
    byTime.get(key).push([pid, (Number(voice) ? 0x80 : 0) | (Number(level) & 0x7f)]);
  }
  return [...byTime.keys()].sort((a, b) => a - b).map((t) => ({
    t, roster: byTime.get(t).map((r) => r[0]), bytes: Buffer.from(byTime.get(t).map((r) => r[1])),
  }));
}

function main() {
  const a = args(process.argv);
  const protoPath = path.resolve(__dirname, '../../proto/speakerswitch/v1/speakerswitch.proto');
  const def = protoLoader.loadSync(protoPath, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
  const api = grpc.loadPackageDefinition(def).speakerswitch.v1;
  const client = new api.SpeakerSwitch(a.server, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (a.token) md.set('authorization', `Bearer ${a.token}`);

  const call = client.Stream(md);
  call.on('data', (resp) => {
    for (const r of resp.rejections) console.error(`rejected: ${r.field}: ${r.message}`);
    for (const e of resp.events) {
      if (e.event === 'switch') {
        console.log(JSON.stringify({ t_ms: e.timestamp_ms, speaker: e.switch.speaker_id || null,
          previous: e.switch.previous_speaker_id || null, reason: e.switch.reason.replace('SWITCH_REASON_', '') }));
      }
    }
  });
  call.on('error', (err) => { console.error(`stream failed: ${err.code} ${err.details}`); process.exitCode = 1; });
  call.on('end', () => client.close());

  let lastRoster = '';
  let batch = 0;
  for (const p of readLevels(a.levels)) {
    const roster = p.roster.join('\u0000');
    const tick = { room_id: a.room, timestamp_ms: p.t, duration_ms: 20, levels: { levels: p.bytes, roster: [] } };
    if (roster !== lastRoster) { tick.levels.roster = p.roster; lastRoster = roster; }
    call.write({ batch_id: ++batch, ticks: [tick] });
  }
  call.end();
}

main();
