// The Node.js client a media server calls per packet:
//
//   const ss = new SpeakerSwitchClient('127.0.0.1:50051', { token });
//   ss.on('switch', (room, sw) => forwardMainFeed(room.roomId, sw.speaker_id));
//   ss.pushLevel('room-1', 'alice', 25, true, rtpMs);
//
// Pushes of every room wait in one buffer; every tickMs (or on flush()) they leave as ONE
// request for all rooms on one stream (or one per shard, all at once: `shards`). Decisions
// come back as events, after the room's view (room(id)) has been updated. The same shape
// as the Python client (clients/python).
import { EventEmitter } from 'events';
import * as fs from 'fs';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Batcher, Built, RoomConfig } from './batching';
import { Participant, RoomEvent, RoomView } from './state';
import type { FloorChange__Output } from './generated/speakerswitch/v1/FloorChange';
import type { PresentationChanged__Output } from './generated/speakerswitch/v1/PresentationChanged';
import type { Rejection__Output } from './generated/speakerswitch/v1/Rejection';
import type { RoomState__Output } from './generated/speakerswitch/v1/RoomState';
import type { RoomSummary__Output } from './generated/speakerswitch/v1/RoomSummary';
import type { Switch__Output } from './generated/speakerswitch/v1/Switch';

export { Batcher, Participant, RoomConfig, RoomEvent, RoomView };

/** Request metadata a room-affine proxy hashes on (deploy/nginx, deploy/envoy). */
export const SHARD_HEADER = 'x-speakerswitch-shard';

const CRC32_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** The shard of a room: CRC-32 of its id (UTF-8) modulo the shard count, as the Python
 * client computes it, so that a proxy sends a room's ticks to one replica whichever
 * language pushed them. */
export function shardOf(roomId: string, shards: number): number {
  let crc = 0xffffffff;
  for (const byte of Buffer.from(roomId, 'utf8')) crc = CRC32_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return ((crc ^ 0xffffffff) >>> 0) % shards;
}

/** The contract the package was built with (copied from the repository by `npm run build`). */
export const PROTO_PATH = path.resolve(__dirname, '..', 'proto', 'speakerswitch', 'v1', 'speakerswitch.proto');

/** TLS with the system's roots (no caFile) or a private CA; a client certificate for
 * mutual TLS. */
export function tlsCredentials(caFile?: string, certFile?: string, keyFile?: string): grpc.ChannelCredentials {
  const read = (file?: string) => (file ? fs.readFileSync(file) : null);
  return grpc.credentials.createSsl(read(caFile), read(keyFile), read(certFile));
}

let api: any = null;
/** speakerswitch.v1 as grpc-js service constructors (loaded once). The decoding options are
 * those package.json's build gives proto-loader-gen-types, so that the generated types
 * describe the objects these constructors decode (a test holds the two the same). */
export function loadApi(): any {
  if (api === null) {
    const def = protoLoader.loadSync(PROTO_PATH, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
    api = (grpc.loadPackageDefinition(def) as any).speakerswitch.v1;
  }
  return api;
}

export interface ClientOptions {
  /** A bearer token, or a function returning the current one (asked when the stream opens). */
  token?: string | (() => string | undefined) | null;
  /** false: plaintext; true: TLS with the system's roots; or tlsCredentials(...). */
  tls?: boolean | grpc.ChannelCredentials;
  /** 10, 20 or 30 ms: the media time one tick covers. */
  tickMs?: number;
  /** Send what was pushed every tickMs of wall time (default); false: call flush() yourself. */
  autoFlush?: boolean;
  /** At most this many packets wait for a flush; beyond it pushLevel refuses (returns false,
   * counted in stats().refused) rather than grow without bound while the server is away. */
  maxPending?: number;
  /** At most this many requests wait for their answer on each stream; then flush() waits. */
  maxInFlight?: number;
  /** More than 1: one stream per shard of rooms (shardOf), each carrying
   * x-speakerswitch-shard for a room-affine proxy in front of replicas; a flush sends to
   * all of them at once. */
  shards?: number;
  /** Reconnect delays: initialMs doubling up to maxMs, with jitter (50 ms, 2 s). */
  backoff?: { initialMs?: number; maxMs?: number };
  channelOptions?: grpc.ChannelOptions;
}

export interface ClientStats {
  streams: number;
  requests: number; responses: number; inFlight: number; rejections: number; reconnects: number;
  latePackets: number; refusedPackets: number; pendingPackets: number;
}

type Listener<A extends unknown[]> = (...args: A) => void;

// The decoded messages the events carry, typed by the interfaces `npm run build` generates
// from the package's copy of speakerswitch.proto (proto-loader-gen-types, with the options
// loadApi decodes with: snake_case fields, enums as their names, 64-bit integers as
// numbers); see speakerswitch.proto for what each field means.
export type Switch = Switch__Output;
export type FloorChange = FloorChange__Output;
export type PresentationChanged = PresentationChanged__Output;
export type Rejection = Rejection__Output;
export type RoomSummary = RoomSummary__Output;
export type RoomState = RoomState__Output;

export interface SpeakerSwitchClient {
  on(event: 'switch', l: Listener<[RoomView, Switch]>): this;
  on(event: 'floor', l: Listener<[RoomView, FloorChange]>): this;
  on(event: 'activeSpeakers', l: Listener<[RoomView, Participant[]]>): this;
  on(event: 'speaking', l: Listener<[RoomView, Participant]>): this;
  on(event: 'forwarding', l: Listener<[RoomView, string[]]>): this;
  on(event: 'presentation', l: Listener<[RoomView, PresentationChanged]>): this;
  on(event: 'roomClosed', l: Listener<[RoomView, string]>): this;
  on(event: 'decision', l: Listener<[RoomEvent]>): this;
  on(event: 'rejection', l: Listener<[Rejection]>): this;
  on(event: 'error', l: Listener<[Error]>): this;
  on(event: string, l: (...args: any[]) => void): this;
}

/** Statuses after which reconnecting may help (server down, restarting or draining; the
 * network; a stream limit free again later); any other is the application's to fix. */
export const RETRYABLE = new Set<number>([
  grpc.status.UNAVAILABLE, grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.CANCELLED,
  grpc.status.DEADLINE_EXCEEDED, grpc.status.ABORTED, grpc.status.RESOURCE_EXHAUSTED,
]);

interface Unacked { id: number; built: Built }

interface LinkOwner {
  readonly stub: any;
  readonly backoff: { initialMs: number; maxMs: number };
  /** 'closing': end the stream once what is unanswered went out again. */
  state(): 'open' | 'closing' | 'closed' | 'failed';
  answered(resp: any): void;
  fatal(err: Error): void;
}

// One stream (one per shard when sharded). Requests go out in order with at most
// maxInFlight unanswered (flush waits for a slot: that is the backpressure). The server
// answers every request, in order; a request still unanswered when the stream breaks is
// sent again on the next one, so each request gets exactly one answer delivered (one the
// old server had processed comes back refused for its timestamps, without decisions,
// rather than twice).
class Link {
  call: grpc.ClientDuplexStream<any, any> | null = null;
  ended: Promise<void> = Promise.resolve();
  unacked: Unacked[] = [];
  requests = 0;
  responses = 0;
  reconnects = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private rosters = new Map<string, string[]>(); // what this stream's server holds
  private attempt = 0;
  private batchId = 0;

  constructor(private readonly owner: LinkOwner, private readonly metadata: () => grpc.Metadata) {}

  send(built: Built): void {
    const r: Unacked = { id: ++this.batchId, built };
    this.unacked.push(r);
    this.requests += 1;
    if (this.call !== null) this.write(this.call, r);
    else if (this.reconnectTimer === null) this.open(); // the first: open sends it
  }

  private open(): void {
    const call: grpc.ClientDuplexStream<any, any> = this.owner.stub.Stream(this.metadata());
    this.call = call;
    this.rosters = new Map(); // a new stream may be a new server: rosters again
    const answeredBefore = this.responses;
    let error: any = null;
    this.ended = new Promise<void>((resolve) => {
      call.on('error', (err: any) => { error = err; });
      call.on('status', (status: grpc.StatusObject) => {
        resolve();
        if (this.call === call) this.call = null;
        this.broken(status.code === grpc.status.OK ? null : error || status, answeredBefore);
      });
    });
    call.on('data', (resp: any) => this.onData(resp));
    for (const r of this.unacked) this.write(call, r);
    if (this.owner.state() !== 'open') call.end();
  }

  private broken(err: any, answeredBefore: number): void {
    const state = this.owner.state();
    if (state === 'failed' || (state !== 'open' && this.unacked.length === 0)) return;
    if (err !== null && !RETRYABLE.has(err.code)) { this.owner.fatal(err); return; }
    if (state === 'closed') return;
    if (this.responses > answeredBefore) this.attempt = 0; // it worked for a while
    this.reconnects += 1;
    // jitter: replicas restarted together are not hit by every client at once
    const { initialMs, maxMs } = this.owner.backoff;
    const delay = Math.min(maxMs, initialMs * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt += 1;
    this.reconnectTimer = setTimeout(() => { this.reconnectTimer = null; this.open(); }, delay);
  }

  private write(call: grpc.ClientDuplexStream<any, any>, r: Unacked): void {
    const ticks = r.built.ticks.map((tick, i) => {
      const roster = r.built.rosters[i];
      if (roster === null || this.rosters.get(tick.room_id) === roster) return tick;
      // LevelVector rosters are sticky per room on the server: sent when changed, and
      // again to a new stream
      this.rosters.set(tick.room_id, roster);
      return { ...tick, levels: { ...tick.levels, roster } };
    });
    call.write({ batch_id: r.id, ticks });
  }

  private onData(resp: any): void {
    const r = this.unacked.shift();
    if (r === undefined || Number(resp.batch_id) !== r.id) {
      this.owner.fatal(new Error(`answer to batch ${resp.batch_id} where ${r && r.id} was expected`));
      return;
    }
    this.responses += 1;
    this.owner.answered(resp);
  }

  /** Ends the stream (after what was written); waits for its end at most 1 s. */
  async end(): Promise<void> {
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    if (this.call !== null) {
      this.call.end();
      await Promise.race([this.ended, new Promise((r) => setTimeout(r, 1000))]);
    }
  }
}

const WHICH: Record<string, string> = {
  switch: 'switch', floor_change: 'floor', presentation: 'presentation',
};

export class SpeakerSwitchClient extends EventEmitter {
  readonly batcher: Batcher;
  readonly rooms = new Map<string, RoomView>();
  /** What ended the client (a stream's fatal status, e.g. UNAUTHENTICATED); thrown by the
   * next push or flush. */
  error: Error | null = null;
  readonly stub: any;
  readonly shards: number;
  /** The streams: one (key -1), or one per shard that has had rooms. */
  private links = new Map<number, Link>();
  private waiting: Array<() => void> = []; // flushes waiting for a slot, close for answers
  private timer: NodeJS.Timeout | null = null;
  private closing = false;
  private closed = false;
  private counts = { rejections: 0, refused: 0 };
  private readonly maxPending: number;
  private readonly maxInFlight: number;
  readonly backoff: { initialMs: number; maxMs: number };

  constructor(readonly target: string, private readonly options: ClientOptions = {}) {
    super();
    this.batcher = new Batcher(options.tickMs ?? 20);
    this.maxPending = options.maxPending ?? 100_000;
    this.maxInFlight = options.maxInFlight ?? 4;
    this.shards = options.shards ?? 1;
    if (!Number.isInteger(this.shards) || this.shards < 1) throw new RangeError(`shards: ${this.shards} is not a positive integer`);
    this.backoff = { initialMs: 50, maxMs: 2000, ...(options.backoff || {}) };
    const tls = options.tls ?? false;
    const creds = tls === false ? grpc.credentials.createInsecure()
      : tls === true ? grpc.credentials.createSsl() : tls;
    this.stub = new (loadApi().SpeakerSwitch)(target, creds, {
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
      'grpc.max_send_message_length': 16 * 1024 * 1024,
      // the channel redials on our backoff's scale, not gRPC's default (1 s growing to
      // 120 s): a restarted server is back in seconds
      'grpc.initial_reconnect_backoff_ms': Math.max(1, this.backoff.initialMs),
      'grpc.max_reconnect_backoff_ms': this.backoff.maxMs,
      ...(options.channelOptions || {}),
    });
    if (options.autoFlush ?? true) this.flushEveryTick();
  }

  /** A call's metadata: the token (asked now, if a function), and a stream's shard. */
  metadata(shard: number | null = null): grpc.Metadata {
    const md = new grpc.Metadata();
    const t = this.options.token;
    const token = typeof t === 'function' ? t() : t;
    if (token) md.set('authorization', `Bearer ${token}`);
    if (shard !== null) md.set(SHARD_HEADER, String(shard));
    return md;
  }

  // ---------------------------------------------------------------- pushing
  private raiseIfFailed(): void {
    if (this.error !== null) throw this.error;
  }

  /** One packet's RFC 6464 level (0..127 -dBov) and V bit (null: the sender has no VAD).
   * false when its tick has already left (a late packet, dropped) or too much waits. */
  pushLevel(room: string, participant: string, level: number, voice: boolean | null, timestampMs: number): boolean {
    this.raiseIfFailed();
    if (this.batcher.packets >= this.maxPending) { this.counts.refused += 1; return false; }
    return this.batcher.addLevel(room, participant, level, voice, timestampMs);
  }

  /** One tick (tickMs) of 16-bit little-endian mono PCM at 8, 16, 32 or 48 kHz, for
   * senders without RFC 6464 levels: the server runs its VAD on it. false when its tick
   * has already left or too much waits (as pushLevel). */
  pushPcm(room: string, participant: string, samples: Uint8Array, sampleRateHz: number, timestampMs: number): boolean {
    this.raiseIfFailed();
    if (this.batcher.packets >= this.maxPending) { this.counts.refused += 1; return false; }
    return this.batcher.addPcm(room, participant, samples, sampleRateHz, timestampMs);
  }

  /** Room tuning from its next tick on: configure(room, { profile: 'podcast' }). */
  configure(room: string, config: RoomConfig): void {
    this.raiseIfFailed();
    this.batcher.setConfig(room, config);
  }

  /** A participant event ('JOIN', 'LEAVE', 'VIDEO_OFF', 'PIN'...), sent with the room's
   * next tick (or the tick of timestampMs), before that tick's audio. */
  pushEvent(room: string, participant: string, kind: string, timestampMs?: number): void {
    this.raiseIfFailed();
    const type = kind.startsWith('PARTICIPANT_EVENT_TYPE_') ? kind : `PARTICIPANT_EVENT_TYPE_${kind.toUpperCase()}`;
    this.batcher.addEvent(room, participant, type, timestampMs);
  }

  join(room: string, participant: string, video = true): void {
    this.pushEvent(room, participant, 'JOIN');
    if (!video) this.pushEvent(room, participant, 'VIDEO_OFF');
  }
  leave(room: string, participant: string): void { this.pushEvent(room, participant, 'LEAVE'); }
  setVideo(room: string, participant: string, on: boolean): void { this.pushEvent(room, participant, on ? 'VIDEO_ON' : 'VIDEO_OFF'); }
  setMuted(room: string, participant: string, muted: boolean): void { this.pushEvent(room, participant, muted ? 'AUDIO_MUTED' : 'AUDIO_UNMUTED'); }
  setScreenShare(room: string, participant: string, on: boolean): void { this.pushEvent(room, participant, on ? 'SCREEN_SHARE_ON' : 'SCREEN_SHARE_OFF'); }
  pin(room: string, participant: string): void { this.pushEvent(room, participant, 'PIN'); }
  unpin(room: string): void { this.pushEvent(room, '', 'UNPIN'); }

  // ---------------------------------------------------------------- sending
  private link(key: number): Link {
    let link = this.links.get(key);
    if (link === undefined) {
      const shard = key < 0 ? null : key;
      link = new Link({
        stub: this.stub, backoff: this.backoff,
        state: () => (this.error !== null ? 'failed' : this.closed ? 'closed' : this.closing ? 'closing' : 'open'),
        answered: (resp) => this.onResponse(resp),
        fatal: (err) => this.fail(err),
      }, () => this.metadata(shard));
      this.links.set(key, link);
    }
    return link;
  }

  private fail(err: Error): void {
    if (this.error === null) this.error = err;
    this.wake();
    this.stopTimer();
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** Send everything pushed so far: one request per stream (all its rooms), all streams
   * at once. Resolves once queued to the streams, not once answered; waits while a
   * stream has maxInFlight requests unanswered. */
  async flush(): Promise<void> {
    this.raiseIfFailed();
    const shards = this.shards;
    const groups = this.batcher.takeBy(shards > 1 ? (room) => shardOf(room, shards) : () => -1);
    await Promise.all([...groups].map(([key, built]) => this.sendAll(this.link(key), built)));
  }

  private async sendAll(link: Link, requests: Built[]): Promise<void> {
    for (const built of requests) {
      while (link.unacked.length >= this.maxInFlight && this.error === null) {
        await new Promise<void>((resolve) => this.waiting.push(resolve));
      }
      this.raiseIfFailed();
      link.send(built);
    }
  }

  private unanswered(): number {
    let n = 0;
    for (const link of this.links.values()) n += link.unacked.length;
    return n;
  }

  /** Resolves once every request sent so far has been answered (or the client failed). */
  async answeredAll(): Promise<void> {
    while (this.unanswered() > 0 && this.error === null) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  private wake(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const w of waiting) w();
  }

  private flushEveryTick(): void {
    const period = this.batcher.tickMs;
    let due = Date.now();
    const next = () => {
      due += period;
      const now = Date.now();
      if (now > due + period) due = now; // fell behind (backpressure): no burst to catch up
      this.timer = setTimeout(() => {
        this.flush().then(next, (err) => this.fail(err));
      }, Math.max(0, due - now));
    };
    next();
  }

  private stopTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Flush what is pending, wait for its answers (at most timeoutMs: a server away longer
   * loses them), end the stream and close the channel. */
  async close(timeoutMs = 5000): Promise<void> {
    this.stopTimer();
    let timeout: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => { timeout = setTimeout(resolve, timeoutMs); });
    try {
      if (this.error === null) {
        await Promise.race([this.flush().then(() => { this.closing = true; return this.answeredAll(); }), late]);
      }
    } finally {
      clearTimeout(timeout);
      this.closing = this.closed = true;
      await Promise.all([...this.links.values()].map((link) => link.end()));
      this.stub.close();
      this.wake();
    }
  }

  stats(): ClientStats {
    const links = [...this.links.values()];
    const sum = (f: (link: Link) => number) => links.reduce((n, link) => n + f(link), 0);
    return {
      streams: links.length, requests: sum((l) => l.requests), responses: sum((l) => l.responses),
      inFlight: this.unanswered(), reconnects: sum((l) => l.reconnects),
      rejections: this.counts.rejections, latePackets: this.batcher.late,
      refusedPackets: this.counts.refused, pendingPackets: this.batcher.packets,
    };
  }

  // ---------------------------------------------------------------- decisions
  /** The room as its decisions describe it so far. */
  room(roomId: string): RoomView {
    let view = this.rooms.get(roomId);
    if (view === undefined) {
      view = new RoomView(roomId);
      this.rooms.set(roomId, view);
    }
    return view;
  }

  /** A listener's exception is the application's bug: reported, and the stream goes on. */
  private safeEmit(event: string, ...args: unknown[]): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      console.error(`speakerswitch: a '${event}' listener failed:`, err);
    }
  }

  private onResponse(resp: any): void {
    for (const r of resp.rejections || []) {
      this.counts.rejections += 1;
      if (this.listenerCount('rejection') > 0) this.safeEmit('rejection', r);
      else console.warn(`speakerswitch refused: room ${r.room_id} ${r.field}: ${r.message}`);
    }
    for (const e of resp.events || []) this.dispatch(e);
    this.wake();
  }

  private dispatch(e: RoomEvent): void {
    const view = this.room(e.room_id);
    const kind = view.apply(e);
    if (kind in WHICH) this.safeEmit(WHICH[kind], view, e[kind as keyof RoomEvent]);
    else if (kind === 'active_speakers') this.safeEmit('activeSpeakers', view, view.activeSpeakers);
    else if (kind === 'speaking_changed') this.safeEmit('speaking', view, view.participant(e.speaking_changed!.participant_id));
    else if (kind === 'forwarding') this.safeEmit('forwarding', view, view.forwarding);
    else if (kind === 'room_closed') this.safeEmit('roomClosed', view, e.room_closed!.reason);
    this.safeEmit('decision', e);
  }

  // ---------------------------------------------------------------- queries
  private unary(method: string, request: object, timeoutMs = 10_000): Promise<any> {
    return new Promise((resolve, reject) => {
      this.stub[method](request, this.metadata(), { deadline: Date.now() + timeoutMs },
        (err: Error | null, reply: any) => (err ? reject(err) : resolve(reply)));
    });
  }

  /** Follow a room (from another process than the one pushing, typically): a snapshot
   * first, then every event in order. A broken connection is resumed after the last
   * sequence received, so nothing is missed and nothing comes twice; when the server no
   * longer has those events (OUT_OF_RANGE: it restarted without Redis), a new snapshot
   * comes instead. Ends after the room's room_closed; `break` ends it earlier. */
  async *watch(roomId: string, options: { waitForRoom?: boolean } = {}): AsyncGenerator<RoomEvent> {
    let last: number | null = null;
    let attempt = 0;
    for (;;) {
      const request: any = { room_id: roomId, wait_for_room: options.waitForRoom ?? true };
      if (last !== null) request.after_sequence = last;
      const call: grpc.ClientReadableStream<RoomEvent> = this.stub.Watch(request, this.metadata());
      call.on('error', () => {}); // cancelled below when the reader stops: not an error
      try {
        for await (const e of call as AsyncIterable<RoomEvent>) {
          attempt = 0;
          if (e.event === 'snapshot') last = Number(e.snapshot!.sequence);
          else if (last !== null && Number(e.sequence) <= last) continue; // already delivered
          else last = Number(e.sequence);
          yield e;
          if (e.event === 'room_closed') return;
        }
        return; // the server ended the watch: the room is gone
      } catch (err: any) {
        if (err.code === grpc.status.OUT_OF_RANGE) last = null; // gone: a snapshot again
        else if (!RETRYABLE.has(err.code)) throw err;
      } finally {
        call.cancel();
      }
      const delay = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** attempt) * (0.5 + Math.random() / 2);
      attempt += 1;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  /** The tenant's rooms on this server, page after page. */
  async *listRooms(pageSize = 1000): AsyncGenerator<RoomSummary> {
    let after = '';
    for (;;) {
      const page = await this.unary('ListRooms', { max_rooms: pageSize, after_room_id: after });
      yield* page.rooms;
      if (!page.more || page.rooms.length === 0) return;
      after = page.rooms[page.rooms.length - 1].room_id;
    }
  }

  getRoom(roomId: string): Promise<RoomState> {
    return this.unary('GetRoom', { room_id: roomId });
  }

  /** End a room now; what is pending for it is flushed and answered first, and a later
   * push starts a new room. Resolves to its last sequence. */
  async closeRoom(roomId: string): Promise<number> {
    await this.flush();
    await this.answeredAll(); // its ticks answered before it is closed
    this.batcher.forget(roomId);
    const reply = await this.unary('CloseRoom', { room_id: roomId });
    const view = this.rooms.get(roomId) || new RoomView(roomId);
    this.rooms.delete(roomId);
    view.closed = true;
    view.sequence = Number(reply.sequence);
    this.safeEmit('roomClosed', view, 'closed');
    return view.sequence;
  }
}
