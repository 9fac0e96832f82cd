#!/usr/bin/env node
// speakerswitch from JavaScript, as a mediasoup-style media server would call it, through
// the npm package (clients/node): stream a room's RFC 6464 levels (here read from a
// levels.csv, t_ms,participant,level,voice) a packet at a time and print each video switch
// as a JSON line. The package sends one request per 20 ms tick; here, replaying a file
// faster than real time, the example flushes after each packet time itself.
//
//   (cd ../../clients/node && npm install)   # builds the package (prepare: npm run build)
//   npm install
//   node client.js --server 127.0.0.1:50051 --levels levels.csv [--room demo] [--token T]
'use strict';
const fs = require('fs');
const { SpeakerSwitchClient } = require('speakerswitch-client');

function args(argv) {
  const out = { server: '127.0.0.1:50051', room: 'node-demo', token: process.env.SPEAKERSWITCH_TOKEN };
  for (let i = 2; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1];
  if (!out.levels) throw new Error('--levels FILE.csv is required');
  return out;
}

function readLevels(file) {
  // -> [[t, [[participant, level, voice], ...]], ...] in time order
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
  if (lines[0].trim() !== 't_ms,participant,level,voice') throw new Error(`${file}: bad header`);
  const byTime = new Map();
  for (const line of lines.slice(1)) {
    const [t, pid, level, voice] = line.split(',');
    const key = Number(t);
    if (!byTime.has(key)) byTime.set(key, []);
    byTime.get(key).push([pid, Number(level), Number(voice) === 1]);
  }
  return [...byTime.entries()].sort((a, b) => a[0] - b[0]);
}

async function main() {
  const a = args(process.argv);
  const ss = new SpeakerSwitchClient(a.server, { token: a.token, autoFlush: false });
  ss.on('switch', (room, sw) => {
    console.log(JSON.stringify({ t_ms: room.timestampMs, speaker: sw.speaker_id || null,
      previous: sw.previous_speaker_id || null, reason: sw.reason.replace('SWITCH_REASON_', '') }));
  });
  ss.on('rejection', (r) => console.error(`rejected: ${r.field}: ${r.message}`));
  for (const [t, packets] of readLevels(a.levels)) {
    for (const [participant, level, voice] of packets) ss.pushLevel(a.room, participant, level, voice, t);
    await ss.flush();
  }
  await ss.close();
}

main().catch((err) => { console.error(`stream failed: ${err.code} ${err.details || err.message}`); process.exit(1); });
