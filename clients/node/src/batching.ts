// What was pushed since the last flush, turned into one StreamRequest for all rooms.
// No I/O and no clock: the client calls add* per packet and take() once per tick. Packets
// are grouped by room and by tick (timestamp rounded down to tickMs), so a flush of 300
// rooms is one message of 300 RoomTicks, not 300 messages.

/** RFC 6464: bit 7 of the level byte is the sender's voice-activity flag. */
export const VOICE_BIT = 0x80;
/** Well inside the server's default of 20,000 ticks per request: reached only when ticks
 * pile up (the stream was slow for a while). */
export const MAX_TICKS_PER_REQUEST = 5000;

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
  events: Array<[string, string]>;
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
      tick = { timestampMs: t, levels: new Map(), unspecified: new Map(), events: [], repeat: t <= sent };
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

  addEvent(room: string, participant: string, type: string, timestampMs?: number): void {
    this.tick(room, timestampMs, false)!.events.push([participant, type]);
    this.packets += 1;
  }

  /** The room was closed: a later tick of the same id starts a new room at any time. */
  forget(room: string): void {
    for (const t of (this.pending.get(room) || new Map()).values()) {
      this.packets -= t.levels.size + t.unspecified.size + t.events.length;
    }
    this.pending.delete(room);
    this.sent.delete(room);
    this.rosters.delete(room);
  }

  /** Everything pending as StreamRequest bodies (without batch_id): usually one. */
  take(): Built[] {
    const out: Built[] = [];
    let current: Built = { ticks: [], rosters: [] };
    for (const [room, ticks] of this.pending) {
      for (const t of [...ticks.keys()].sort((a, b) => a - b)) {
        if (current.ticks.length >= MAX_TICKS_PER_REQUEST) { out.push(current); current = { ticks: [], rosters: [] }; }
        const [msg, roster] = this.fill(room, ticks.get(t)!);
        current.ticks.push(msg);
        current.rosters.push(roster);
      }
    }
    if (current.ticks.length) out.push(current);
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
    if (tick.levels.size || tick.unspecified.size) this.sent.set(room, tick.timestampMs);
    for (const [participant_id, level] of tick.unspecified) msg.audio.push({ participant_id, level: { level } });
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
