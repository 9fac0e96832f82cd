// The Node.js client a media server calls per packet:
//
//   const ss = new SpeakerSwitchClient('127.0.0.1:50051', { token });
//   ss.on('switch', (room, sw) => forwardMainFeed(room.roomId, sw.speaker_id));
//   ss.pushLevel('room-1', 'alice', 25, true, rtpMs);
//
// Pushes of every room wait in one buffer; every tickMs (or on flush()) they leave as ONE
// request for all rooms on one stream. Decisions come back as events, after the room's
// view (room(id)) has been updated.
import { EventEmitter } from 'events';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Batcher } from './batching';
import { Participant, RoomEvent, RoomView } from './state';

export { Batcher, Participant, RoomEvent, RoomView };

/** The contract the package was built with (copied from the repository by `npm run build`). */
export const PROTO_PATH = path.resolve(__dirname, '..', 'proto', 'speakerswitch', 'v1', 'speakerswitch.proto');

let api: any = null;
/** speakerswitch.v1 as grpc-js service constructors (loaded once). */
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
  /** false: plaintext; true: TLS with the system's roots; or grpc-js credentials. */
  tls?: boolean | grpc.ChannelCredentials;
  /** 10, 20 or 30 ms: the media time one tick covers. */
  tickMs?: number;
  /** Send what was pushed every tickMs of wall time (default); false: call flush() yourself. */
  autoFlush?: boolean;
  /** At most this many packets wait for a flush; beyond it pushLevel refuses (returns false,
   * counted in stats().refused) rather than grow without bound while the server is away. */
  maxPending?: number;
  channelOptions?: grpc.ChannelOptions;
}

export interface ClientStats {
  requests: number; responses: number; inFlight: number; rejections: number;
  latePackets: number; refusedPackets: number; pendingPackets: number;
}

type Listener<A extends unknown[]> = (...args: A) => void;

export interface SpeakerSwitchClient {
  on(event: 'switch', l: Listener<[RoomView, any]>): this;
  on(event: 'floor', l: Listener<[RoomView, any]>): this;
  on(event: 'activeSpeakers', l: Listener<[RoomView, Participant[]]>): this;
  on(event: 'speaking', l: Listener<[RoomView, Participant]>): this;
  on(event: 'forwarding', l: Listener<[RoomView, string[]]>): this;
  on(event: 'presentation', l: Listener<[RoomView, any]>): this;
  on(event: 'roomClosed', l: Listener<[RoomView, string]>): this;
  on(event: 'decision', l: Listener<[RoomEvent]>): this;
  on(event: 'rejection', l: Listener<[any]>): this;
  on(event: 'error', l: Listener<[Error]>): this;
  on(event: string, l: (...args: any[]) => void): this;
}

const WHICH: Record<string, string> = {
  switch: 'switch', floor_change: 'floor', presentation: 'presentation',
};

export class SpeakerSwitchClient extends EventEmitter {
  readonly batcher: Batcher;
  readonly rooms = new Map<string, RoomView>();
  /** What ended the stream (e.g. UNAUTHENTICATED); thrown by the next push or flush. */
  error: Error | null = null;
  readonly stub: any;
  private call: grpc.ClientDuplexStream<any, any> | null = null;
  private ended: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private batchId = 0;
  private counts = { requests: 0, responses: 0, rejections: 0, refused: 0 };
  private answered: Array<() => void> = [];
  private readonly maxPending: number;

  constructor(readonly target: string, private readonly options: ClientOptions = {}) {
    super();
    this.batcher = new Batcher(options.tickMs ?? 20);
    this.maxPending = options.maxPending ?? 100_000;
    const tls = options.tls ?? false;
    const creds = tls === false ? grpc.credentials.createInsecure()
      : tls === true ? grpc.credentials.createSsl() : tls;
    this.stub = new (loadApi().SpeakerSwitch)(target, creds, {
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
      'grpc.max_send_message_length': 16 * 1024 * 1024,
      ...(options.channelOptions || {}),
    });
    if (options.autoFlush ?? true) this.flushEveryTick();
  }

  metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    const t = this.options.token;
    const token = typeof t === 'function' ? t() : t;
    if (token) md.set('authorization', `Bearer ${token}`);
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
  private stream(): grpc.ClientDuplexStream<any, any> {
    if (this.call !== null) return this.call;
    const call: grpc.ClientDuplexStream<any, any> = this.stub.Stream(this.metadata());
    this.call = call;
    call.on('data', (resp: any) => this.onResponse(resp));
    this.ended = new Promise<void>((resolve) => {
      call.on('error', (err: Error) => { this.fail(err); resolve(); });
      call.on('end', () => resolve());
    });
    return call;
  }

  private fail(err: Error): void {
    if (this.error === null) this.error = err;
    this.wakeAnswered();
    this.stopTimer();
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** Send everything pushed so far as one request (all rooms). Resolves once written to
   * the stream (waiting for 'drain' when the server reads slowly), not once answered. */
  async flush(): Promise<void> {
    this.raiseIfFailed();
    const bodies = this.batcher.take();
    if (!bodies.length) return;
    const call = this.stream();
    for (const body of bodies) {
      this.counts.requests += 1;
      const ok = call.write({ batch_id: ++this.batchId, ticks: body.ticks });
      if (!ok) await new Promise<void>((resolve) => call.once('drain', resolve));
    }
  }

  /** Resolves once every request sent so far has been answered (or the stream failed). */
  answeredAll(): Promise<void> {
    if (this.counts.responses >= this.counts.requests || this.error) return Promise.resolve();
    return new Promise((resolve) => this.answered.push(resolve));
  }

  private wakeAnswered(): void {
    const waiting = this.answered;
    this.answered = [];
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

  /** Flush what is pending, wait for its answers, end the stream and close the channel. */
  async close(): Promise<void> {
    this.stopTimer();
    if (this.error === null) {
      await this.flush();
      await this.answeredAll();
    }
    if (this.call !== null) {
      this.call.end();
      await this.ended;
    }
    this.stub.close();
  }

  stats(): ClientStats {
    const c = this.counts;
    return {
      requests: c.requests, responses: c.responses, inFlight: c.requests - c.responses,
      rejections: c.rejections, latePackets: this.batcher.late, refusedPackets: c.refused,
      pendingPackets: this.batcher.packets,
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
    this.counts.responses += 1;
    for (const r of resp.rejections || []) {
      this.counts.rejections += 1;
      if (this.listenerCount('rejection') > 0) this.safeEmit('rejection', r);
      else console.warn(`speakerswitch refused: room ${r.room_id} ${r.field}: ${r.message}`);
    }
    for (const e of resp.events || []) this.dispatch(e);
    if (this.counts.responses >= this.counts.requests) this.wakeAnswered();
  }

  private dispatch(e: RoomEvent): void {
    const view = this.room(e.room_id);
    const kind = view.apply(e);
    if (kind in WHICH) this.safeEmit(WHICH[kind], view, e[kind]);
    else if (kind === 'active_speakers') this.safeEmit('activeSpeakers', view, view.activeSpeakers);
    else if (kind === 'speaking_changed') this.safeEmit('speaking', view, view.participant(e.speaking_changed.participant_id));
    else if (kind === 'forwarding') this.safeEmit('forwarding', view, view.forwarding);
    else if (kind === 'room_closed') this.safeEmit('roomClosed', view, e.room_closed.reason);
    this.safeEmit('decision', e);
  }

  // ---------------------------------------------------------------- queries
  private unary(method: string, request: object, timeoutMs = 10_000): Promise<any> {
    return new Promise((resolve, reject) => {
      this.stub[method](request, this.metadata(), { deadline: Date.now() + timeoutMs },
        (err: Error | null, reply: any) => (err ? reject(err) : resolve(reply)));
    });
  }

  getRoom(roomId: string): Promise<any> {
    return this.unary('GetRoom', { room_id: roomId });
  }

  /** End a room now; what is pending for it is flushed and answered first, and a later
   * push starts a new room. Resolves to its last sequence. */
  async closeRoom(roomId: string): Promise<number> {
    await this.flush();
    await this.answeredAll();
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
