// Per-room and per-participant state as the decisions describe it, in the shape LiveKit's
// SDKs give (isSpeaking, audioLevel, lastSpokeAt), kept up to date by RoomView.apply for
// every event of the room, in order. The same rules as the Python client's state.py.

import type { RoomEvent__Output } from './generated/speakerswitch/v1/RoomEvent';

/** A decoded speakerswitch.v1.RoomEvent (proto-loader objects: snake_case fields, enums as
 * their names, 64-bit integers as numbers, `event` naming the oneof that is set), as the
 * interface generated from the .proto by `npm run build`. */
export type RoomEvent = RoomEvent__Output;

export class Participant {
  isSpeaking = false;
  /** Smoothed level in dBov (-127..0), from the latest ActiveSpeakers ranking it was in. */
  levelDbov = -127;
  /** Media time it was last speaking: when it stopped, or while it speaks the latest event
   * saying so. null while it has not spoken. */
  lastSpokeAt: number | null = null;

  constructor(readonly participantId: string) {}

  /** The smoothed level as a linear amplitude, 0..1 (LiveKit's audioLevel). */
  get audioLevel(): number {
    return this.levelDbov > -127 ? Math.pow(10, this.levelDbov / 20) : 0;
  }
}

export class RoomView {
  sequence = 0;
  timestampMs = 0;
  /** Shown in the main video feed ('' : nobody). */
  speakerId = '';
  /** Holds the audio floor (the dominant speaker). */
  audioSpeakerId = '';
  presenterId = '';
  forwarding: string[] = [];
  activeSpeakers: Participant[] = [];
  participants = new Map<string, Participant>();
  closed = false;

  constructor(readonly roomId: string) {}

  participant(id: string): Participant {
    let p = this.participants.get(id);
    if (p === undefined) {
      p = new Participant(id);
      this.participants.set(id, p);
    }
    return p;
  }

  /** Update from one event; returns which one it was (the `event` oneof's name). */
  apply(e: RoomEvent): string {
    // `event` names the oneof that is set: the `!` below read that one
    const kind = e.event || '';
    const t = Number(e.timestamp_ms);
    if (e.sequence) this.sequence = Number(e.sequence);
    this.timestampMs = Math.max(this.timestampMs, t);
    switch (kind) {
      case 'switch':
        this.speakerId = e.switch!.speaker_id;
        this.audioSpeakerId = e.switch!.audio_speaker_id;
        break;
      case 'floor_change':
        this.audioSpeakerId = e.floor_change!.speaker_id;
        break;
      case 'speaking_changed': {
        const p = this.participant(e.speaking_changed!.participant_id);
        // a start, or the end of its speech: both are a time it was speaking
        if (e.speaking_changed!.speaking || p.isSpeaking) p.lastSpokeAt = t;
        p.isSpeaking = !!e.speaking_changed!.speaking;
        break;
      }
      case 'active_speakers':
        this.activeSpeakers = (e.active_speakers!.speakers || []).map((r) => {
          const p = this.participant(r.participant_id);
          p.levelDbov = r.level_dbov;
          p.isSpeaking = !!r.speaking;
          if (r.speaking) p.lastSpokeAt = t;
          return p;
        });
        break;
      case 'forwarding':
        this.forwarding = [...(e.forwarding!.participant_ids || [])];
        break;
      case 'presentation':
        this.presenterId = e.presentation!.presenter_id;
        break;
      case 'room_closed':
        this.closed = true;
        break;
    }
    return kind;
  }
}
