// What was pushed since the last flush, turned into one StreamRequest per stream.
// No I/O and no clock: the client calls add* per packet and take() once per tick. Packets
// are grouped by room and by tick (timestamp rounded down to tickMs), so a flush of 300
// rooms is one message of 300 RoomTicks, not 300 messages. The same rules as the Python
// client's batching.py.

/** RFC 6464: bit 7 of the level byte is the sender's voice-activity flag. */
export const VOICE_BIT = 0x80;
/** Well inside the server's default of 20,000 ticks per request: reached only when ticks
 * pile up (the stream was slow for a while). */
export const MAX_TICKS_PER_REQUEST = 5000;
/** Well inside the server's 16 MiB per message: reached by PCM (300 rooms x 6 of 20 ms at
 * 48 kHz make 3.5 MB a tick). */
export const MAX_REQUEST_BYTES = 4 * 1024 * 1024;
/** The sample rates the server's VAD takes PCM at. */
export const PCM_RATES = [8000, 16000, 32000, 48000];

/** Room tuning (speakerswitch.v1.RoomConfig, snake_case as in the proto): a profile
 * ('meeting', 'podcast'...) and the fields it overrides; unset fields keep their value. */
export interface RoomConfig {
  profile?: string;
  algorithm?: string;
  hold_ms?: number;
  min_speech_ms?: number;
  interrupt_ms?: number;
  switch_margin_db?: number;
  active_speakers?: number;
  active_speakers_interval_ms?: number;
  forwarding_size?: number;
  forwarding_min_ms?: number;
  speaking_interval_ms?: number;
  no_audio_timeout_ms?: number;
  outlast_ms?: number;
}

/** A request's ticks and, per tick, the roster its LevelVector's bytes are in (null: no
 * vector). The stream fills `levels.roster` in only where the server does not hold that
 * roster yet: it is sticky per room on the server, and lost with a restarted server. */
export interface Built {
  ticks: any[];
  rosters: Array<string[] | null>;
}

interface PendingTick {
  timestampMs: number;
  /** participant -> RFC 6464 byte (V bit set or not), in the order they were pushed */
  levels: Map<string, number>;
  /** levels of senders without a V bit (they cannot go in a LevelVector) */
  unspecified: Map<string, number>;
  /** participant -> one tick of 16-bit little-endian mono PCM and its sample rate */
  pcm: Map<string, [Uint8Array, number]>;
  events: Array<[string, string]>;
  config: RoomConfig | null;
  /** at the timestamp of the room's last audio tick sent: events only, no audio */
  repeat: boolean;
}

export class Batcher {
  pending = new Map<string, Map<number, PendingTick>>();
  /** Packets and events waiting for the next take(). */
  packets = 0;
  /** Packets dropped because their tick had already been sent. */
  late = 0;
  private sent = new Map<string, number>();       // room -> timestamp of its last audio tick
  private rosters = new Map<string, string[]>();  // room -> the order of its LevelVectors

  constructor(readonly tickMs = 20) {
    if (![10, 20, 30].includes(tickMs)) throw new RangeError(`tickMs: ${tickMs} is not 10, 20 or 30`);
  }

  private tick(room: string, timestampMs: number | undefined, audio: boolean): PendingTick | null {
    let ticks = this.pending.get(room);
    if (ticks === undefined) {
      ticks = new Map();
      this.pending.set(room, ticks);
    }
    const sent = this.sent.has(room) ? this.sent.get(room)! : -1;
    let t: number;
    if (timestampMs === undefined) { // an event: with the room's newest tick, or on its own
      t = ticks.size ? Math.max(...ticks.keys()) : Math.max(sent, 0);
    } else {
      if (!Number.isInteger(timestampMs) || timestampMs < 0) {
        throw new RangeError(`timestampMs: ${timestampMs} is not a non-negative integer`);
      }
      t = timestampMs - (timestampMs % this.tickMs);
      if (t <= sent) {
        // the server keeps a participant's state across a gap (packet loss), and a tick
        // going back in time would be refused: a late packet is dropped
        if (audio) { this.late += 1; return null; }
        t = sent; // events-only ticks may repeat the last timestamp
      }
    }
    let tick = ticks.get(t);
    if (tick === undefined) {
      tick = {
        timestampMs: t, levels: new Map(), unspecified: new Map(), pcm: new Map(), events: [],
        config: null, repeat: t <= sent,
      };
      ticks.set(t, tick);
    } else if (audio && tick.repeat) {
      this.late += 1;
      return null;
    }
    return tick;
  }

  /** false if the packet came too late for its tick (dropped). Two packets of one
   * participant in one tick keep the louder level, with voice if either had it. */
  addLevel(room: string, participant: string, level: number, voice: boolean | null, timestampMs: number): boolean {
    if (!Number.isInteger(level) || level < 0 || level > 127) {
      throw new RangeError(`level: ${level} is not 0..127 (-dBov, RFC 6464)`);
    }
    const tick = this.tick(room, timestampMs, true);
    if (tick === null) return false;
    if (voice === null || voice === undefined) {
      const old = tick.unspecified.get(participant);
      if (old === undefined) this.packets += 1;
      tick.unspecified.set(participant, old === undefined ? level : Math.min(old, level));
      return true;
    }
    let byte = level | (voice ? VOICE_BIT : 0);
    const old = tick.levels.get(participant);
    if (old === undefined) this.packets += 1;
    else byte = Math.min(old & 0x7f, level) | ((old | byte) & VOICE_BIT);
    tick.levels.set(participant, byte);
    return true;
  }

  /** One tick of 16-bit little-endian mono PCM (the server runs its VAD on it); false if
   * its tick has already left. */
  addPcm(room: string, participant: string, samples: Uint8Array, sampleRateHz: number, timestampMs: number): boolean {
    if (!PCM_RATES.includes(sampleRateHz)) {
      throw new RangeError(`sampleRateHz: ${sampleRateHz} is not 8000, 16000, 32000 or 48000`);
    }
    const expected = (sampleRateHz * this.tickMs / 1000) * 2;
    if (samples.length !== expected) {
      throw new RangeError(`samples: ${samples.length} bytes, not ${expected} (one tick of ${this.tickMs} ms of 16-bit mono at ${sampleRateHz} Hz)`);
    }
    const tick = this.tick(room, timestampMs, true);
    if (tick === null) return false;
    if (!tick.pcm.has(participant)) this.packets += 1;
    tick.pcm.set(participant, [samples, sampleRateHz]);
    return true;
  }

  addEvent(room: string, participant: string, type: string, timestampMs?: number): void {
    this.tick(room, timestampMs, false)!.events.push([participant, type]);
    this.packets += 1;
  }

  /** Room tuning from the room's next tick on; two in one tick merge (the later wins). */
  setConfig(room: string, config: RoomConfig): void {
    const tick = this.tick(room, undefined, false)!;
    if (tick.config === null) this.packets += 1;
    tick.config = { ...(tick.config || {}), ...config };
  }

  /** The room was closed: a later tick of the same id starts a new room at any time. */
  forget(room: string): void {
    for (const t of (this.pending.get(room) || new Map()).values()) {
      this.packets -= t.levels.size + t.unspecified.size + t.pcm.size + t.events.length + (t.config ? 1 : 0);
    }
    this.pending.delete(room);
    this.sent.delete(room);
    this.rosters.delete(room);
  }

  /** Everything pending as StreamRequest bodies (without batch_id): usually one. */
  take(): Built[] {
    return this.takeBy(() => 0).get(0) || [];
  }

  /** Everything pending as StreamRequest bodies per value of group(room) (a shard), and
   * forget it. Usually one per group; more only after the server was away for a while, so
   * that none goes over the server's limits. */
  takeBy(group: (room: string) => number): Map<number, Built[]> {
    const out = new Map<number, Built[]>();
    const size = new Map<number, number>();
    for (const [room, ticks] of this.pending) {
      const key = group(room);
      let requests = out.get(key);
      if (requests === undefined) {
        requests = [{ ticks: [], rosters: [] }];
        out.set(key, requests);
        size.set(key, 0);
      }
      for (const t of [...ticks.keys()].sort((a, b) => a - b)) {
        const tick = ticks.get(t)!;
        let cost = room.length + 16 * (tick.levels.size + tick.unspecified.size + tick.events.length);
        for (const [samples] of tick.pcm.values()) cost += 16 + samples.length;
        let current = requests[requests.length - 1];
        if (current.ticks.length && (current.ticks.length >= MAX_TICKS_PER_REQUEST
                                     || size.get(key)! + cost > MAX_REQUEST_BYTES)) {
          current = { ticks: [], rosters: [] };
          requests.push(current);
          size.set(key, 0);
        }
        size.set(key, size.get(key)! + cost);
        const [msg, roster] = this.fill(room, tick);
        current.ticks.push(msg);
        current.rosters.push(roster);
      }
    }
    this.pending.clear();
    this.packets = 0;
    return out;
  }

  private fill(room: string, tick: PendingTick): [any, string[] | null] {
    const msg: any = {
      room_id: room, timestamp_ms: tick.timestampMs, duration_ms: this.tickMs,
      events: tick.events.map(([participant_id, type]) => ({ participant_id, type })),
      audio: [],
    };
    if (tick.config !== null) msg.config = tick.config;
    if (tick.levels.size || tick.unspecified.size || tick.pcm.size) this.sent.set(room, tick.timestampMs);
    for (const [participant_id, level] of tick.unspecified) msg.audio.push({ participant_id, level: { level } });
    for (const [participant_id, [samples, sample_rate_hz]] of tick.pcm) {
      msg.audio.push({ participant_id, pcm: { samples: Buffer.from(samples.buffer, samples.byteOffset, samples.length), sample_rate_hz } });
    }
    if (!tick.levels.size) return [msg, null];
    const roster = this.rosters.get(room);
    if (roster !== undefined && roster.length === tick.levels.size && roster.every((p) => tick.levels.has(p))) {
      // the usual case: the same senders; the server holds their order (sticky roster)
      msg.levels = { levels: Buffer.from(roster.map((p) => tick.levels.get(p)!)) };
      return [msg, roster];
    }
    if (roster !== undefined && [...tick.levels.keys()].every((p) => roster.includes(p))) {
      // some senders are silent (DTX, loss): keep the roster, send these one by one
      for (const [participant_id, byte] of tick.levels) {
        msg.audio.push({
          participant_id,
          level: { level: byte & 0x7f, voice: byte & VOICE_BIT ? 'VOICE_ACTIVITY_PRESENT' : 'VOICE_ACTIVITY_ABSENT' },
        });
      }
      return [msg, null];
    }
    const next = [...tick.levels.keys()];
    this.rosters.set(room, next);
    msg.levels = { levels: Buffer.from(next.map((p) => tick.levels.get(p)!)) };
    return [msg, next];
  }
}
