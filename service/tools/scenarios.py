"""Deterministic multi-participant conversations with ground truth, for measuring switching.

    speakerswitch scenarios --out DIR [--types turns,echo] [--variants 3] [--seconds 60]

Each scenario is a folder ``<type>_<NN>/`` with ``p1.wav ...`` (16 kHz mono int16, one
track per participant), ``levels.csv`` (RFC 6464 level and webrtcvad V bit per 20 ms
packet, as a browser would send them) and ``truth.json``:

  duration_ms, participants, type, scenario
  speech     {pid: [[start_ms, end_ms], ...]}  every utterance, interjections included
  nonspeech  {pid: [[start_ms, end_ms, kind], ...]}  coughs, typing, slams, breaths
  floor      [[start_ms, end_ms, pid], ...]  who should be on screen
  changes    [[t_ms, from_pid, to_pid], ...]

The floor follows conversation-analysis rules (``derive_floor``): a participant's
utterances less than 600 ms apart form one spurt; spurts under 1 s (backchannels, "yeah")
never take the floor; a spurt of 1 s or more that starts after the holder's last spurt
ended takes the floor at its start; one that starts while the holder is still talking takes
it at its start only if it lasts 1.5 s or more and outlasts the holder's spurt.

Speech is ``synth.speech_like`` (no recordings, no external tools), so the scenarios build
anywhere from a clean clone; they complement, and are deliberately different from, the
espeak-ng development corpus of the evaluation kit.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from dataclasses import dataclass, field

import numpy as np

from dsp.pcm import level_dbov as pcm_level_dbov
from dsp.rfc6464 import dbov_to_level
from dsp.vad import DEFAULT_MODE, VadBank

from . import recorded, synth

RATE = 16000
PACKET_MS = 20
MERGE_GAP_MS = 600
MIN_TURN_MS = 1000
MIN_INTERRUPT_MS = 1500
TYPES = ("turns", "backchannel", "noise", "gains", "overlap", "echo", "muted", "large", "rapid",
         "crosstalk", "music", "space", "laptop")
RECORDED = "recorded"
"""Real recorded voices with conversational timing (``recorded.py``): built only where
Debian's asterisk-core-sounds packages are installed (``make recorded-speech``), so not
one of the default TYPES."""


# ----------------------------------------------------------------------------- truth

def spurts(spans: list[list[int]], gap_ms: int = MERGE_GAP_MS) -> list[list[int]]:
    out: list[list[int]] = []
    for s, e in sorted(spans):
        if out and s - out[-1][1] < gap_ms:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def derive_floor(speech: dict[str, list[list[int]]], duration_ms: int
                 ) -> tuple[list[list], list[list]]:
    """The floor timeline and its changes from utterance spans (rules in the docstring)."""
    order = {p: i for i, p in enumerate(sorted(speech))}
    all_spurts = sorted(((s, e, p) for p, spans in speech.items() for s, e in spurts(spans)),
                        key=lambda z: (z[0], order[z[2]]))
    holder: str | None = None
    holder_end = 0
    takes: list[tuple[int, str]] = []
    for s, e, p in all_spurts:
        if p == holder:
            holder_end = max(holder_end, e)
        elif e - s >= MIN_TURN_MS and (
                holder is None or s >= holder_end
                or (e - s >= MIN_INTERRUPT_MS and e > holder_end)):
            takes.append((s, p))
            holder, holder_end = p, e
    floor = [[t, takes[i + 1][0] if i + 1 < len(takes) else duration_ms, p]
             for i, (t, p) in enumerate(takes)]
    changes = [[b[0], a[2], b[2]] for a, b in zip(floor, floor[1:])]
    return floor, changes


# ----------------------------------------------------------------------------- scenes

@dataclass
class Voice:
    f0_hz: float
    level_dbov: float


@dataclass
class Scene:
    """A conversation being built: per-participant tracks and what was put in them."""
    rng: np.random.Generator
    seconds: float
    voices: dict[str, Voice]
    rate: int = RATE
    tracks: dict[str, np.ndarray] = field(default_factory=dict)
    clean: dict[str, np.ndarray] = field(default_factory=dict)
    speech: dict[str, list[list[int]]] = field(default_factory=dict)
    nonspeech: dict[str, list[list]] = field(default_factory=dict)
    muted: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = int(self.seconds * self.rate)
        for p in self.voices:
            # room and preamp noise: every microphone has some
            floor_db = self.rng.uniform(-75, -52)
            self.tracks[p] = synth.noise(self.rng, n, floor_db, "pink", self.rate)
            self.clean[p] = np.zeros(n)
            self.speech[p] = []
            self.nonspeech[p] = []
            self.muted[p] = []

    @property
    def participants(self) -> list[str]:
        return list(self.voices)

    def place(self, p: str, x: np.ndarray, start_s: float) -> float:
        """Utterance ``x`` of ``p`` at ``start_s``, recorded as speech; returns its end in s."""
        a, b = synth.add_at(self.clean[p], x, start_s, self.rate)
        if b > a:
            self.speech[p].append([a, b])
        return b / 1000

    def say(self, p: str, start_s: float, seconds: float) -> float:
        """One utterance (level jitter +-2 dB); returns its end in s."""
        v = self.voices[p]
        x = synth.speech_like(self.rng, seconds, self.rate, v.f0_hz * self.rng.uniform(0.95, 1.05),
                              v.level_dbov + self.rng.uniform(-2, 2))
        return self.place(p, x, start_s)

    def turn(self, p: str, start_s: float, seconds: float) -> float:
        """Several utterances with pauses shorter than the merge gap; returns the end."""
        if self.rng.random() < 0.3 and start_s > 0.6:  # an audible breath before the turn
            self.sound(p, synth.breath(self.rng, self.rate, self.voices[p].level_dbov - 18),
                       start_s - 0.45, "breath")
        t, end = start_s, start_s + seconds
        while end - t > 0.5:
            t = self.say(p, t, min(self.rng.uniform(1.5, 5.0), end - t))
            # between sentences: mostly a breath, sometimes a thinking pause
            t += self.rng.uniform(0.15, 0.45) if self.rng.random() < 0.75 else self.rng.uniform(0.5, 1.2)
        return min(t, end)

    def sound(self, p: str, x: np.ndarray, start_s: float, kind: str) -> None:
        a, b = synth.add_at(self.tracks[p], x, start_s, self.rate)
        if b > a:
            self.nonspeech[p].append([a, b, kind])

    def leak(self, db_range: tuple[float, float] = (-30, -20),
             delay_ms: tuple[float, float] = (30, 120)) -> None:
        """Imperfect echo cancellation: every other participant's voice leaks into each
        track, delayed and attenuated."""
        for p in self.voices:
            for q in self.voices:
                if q != p:
                    d = int(self.rng.uniform(*delay_ms) * self.rate / 1000)
                    g = synth.dbov_gain(self.rng.uniform(*db_range))
                    self.tracks[p][d:] += g * self.clean[q][: len(self.clean[q]) - d]

    def share_room(self, p: str, q: str, db_range: tuple[float, float] = (-10, -4),
                   delay_ms: tuple[float, float] = (1, 6)) -> None:
        """``p`` and ``q`` sit in one room, a few metres apart: each microphone carries the
        other's voice a few dB down, after the short acoustic path."""
        for a, b in ((p, q), (q, p)):
            d = int(self.rng.uniform(*delay_ms) * self.rate / 1000)
            g = synth.dbov_gain(self.rng.uniform(*db_range))
            self.tracks[a][d:] += g * self.clean[b][: len(self.clean[b]) - d]

    def reverberate(self, p: str, rt60_s: float, direct_to_reverb_db: float) -> None:
        """``p`` talks in a room that rings (``synth.room_response``): its microphone hears
        the ringing after each word. The truth keeps the words' own spans."""
        h = synth.room_response(self.rng, self.rate, rt60_s, 0.0, direct_to_reverb_db)
        self.clean[p] = synth.through(self.clean[p], h)

    def laptop_echo(self, p: str, db_range: tuple[float, float] = (-24, -10),
                    delay_ms: tuple[float, float] = (20, 150),
                    rt60_s: tuple[float, float] = (0.2, 0.6),
                    direct_to_reverb_db: tuple[float, float] = (-3, 6)) -> None:
        """``p`` plays the call through its laptop's speakers with no echo canceller: its
        microphone carries everyone else's voice, late (the path from their microphones to
        this one), attenuated and ringing in ``p``'s room."""
        others = sum(self.clean[q] for q in self.voices if q != p)
        h = synth.room_response(self.rng, self.rate, self.rng.uniform(*rt60_s),
                                self.rng.uniform(*delay_ms),
                                self.rng.uniform(*direct_to_reverb_db))
        g = synth.dbov_gain(self.rng.uniform(*db_range))
        self.tracks[p] += g * synth.through(others, h)

    def mute(self, p: str, start_s: float, end_s: float) -> None:
        self.muted[p].append((start_s, end_s))

    def finish(self) -> dict[str, np.ndarray]:
        out = {}
        for p in self.voices:
            x = self.tracks[p] + self.clean[p]
            for a, b in self.muted[p]:  # a muted microphone sends digital silence
                x[int(a * self.rate):int(b * self.rate)] = 0.0
            out[p] = np.clip(x, -0.999, 0.999)
        return out


def _voices(rng: np.random.Generator, n: int, levels: tuple[float, float] = (-30, -18)
            ) -> dict[str, Voice]:
    return {f"p{i + 1}": Voice(float(rng.choice([rng.uniform(95, 140), rng.uniform(170, 250)])),
                               float(rng.uniform(*levels))) for i in range(n)}


def _turn_taking(s: Scene, speakers: list[str], start_s: float = 0.5,
                 turn_s: tuple[float, float] = (2.5, 12.0), gap_s: tuple[float, float] = (0.1, 1.0),
                 backchannels: float = 0.05, overlap: float = 0.0, failed: float = 0.0) -> None:
    """Turns by ``speakers`` until the end; listeners sometimes say 'yeah' (probability
    per second ``backchannels``), interrupt (``overlap``: share of turns that start 0.3-2 s
    before the previous ends) or fail to interrupt (``failed``: per turn)."""
    rng = s.rng
    t, current = start_s, None
    end_s = s.seconds - 1.0
    while t < end_s - 2.0:
        p = str(rng.choice([q for q in speakers if q != current]))
        length = min(rng.uniform(*turn_s), end_s - t)
        turn_end = s.turn(p, t, length)
        listeners = [q for q in s.participants if q != p]
        for k in np.arange(t + 1.0, turn_end - 0.5, 1.0):
            if rng.random() < backchannels:
                s.say(str(rng.choice(listeners)), k + rng.uniform(0, 0.5), rng.uniform(0.15, 0.8))
        if rng.random() < failed and turn_end - t > 5:
            s.say(str(rng.choice(listeners)), t + rng.uniform(1.5, turn_end - t - 2.5),
                  rng.uniform(0.6, 1.4))
        if rng.random() < overlap:
            t = turn_end - rng.uniform(0.3, 2.0)
            # the interrupter must outlast the holder and talk for 1.5 s at least
            turn_s_next = (max(turn_s[0], 3.5), max(turn_s[1], 4.0))
            nxt = str(rng.choice(listeners))
            length = min(rng.uniform(*turn_s_next), end_s - t)
            turn_end = s.turn(nxt, t, length)
            p = nxt
        t, current = turn_end + rng.uniform(*gap_s), p


def scene(kind: str, seed: int, seconds: float = 60.0) -> Scene:
    """Build one scenario of ``kind`` (one of TYPES, or RECORDED)."""
    if kind == RECORDED:
        return recorded_scene(seed, seconds)
    rng = np.random.default_rng([TYPES.index(kind), seed])
    if kind == "turns":
        s = Scene(rng, seconds, _voices(rng, int(rng.integers(3, 7))))
        _turn_taking(s, s.participants)
    elif kind == "backchannel":
        s = Scene(rng, seconds, _voices(rng, int(rng.integers(3, 6))))
        main = s.participants[0]
        s.turn(main, 0.5, seconds - 1.5)
        pauses = [b for (_a, b), (c, _d) in zip(s.speech[main], s.speech[main][1:])]
        for t in np.arange(2.0, seconds - 2.0, rng.uniform(1.5, 3.0)):
            who = str(rng.choice(s.participants[1:]))
            s.say(who, t + rng.uniform(0, 1.0), rng.uniform(0.15, 0.8))
        for end_ms in pauses:  # listeners answer at the speaker's pauses, too
            if rng.random() < 0.5:
                who = str(rng.choice(s.participants[1:]))
                s.say(who, end_ms / 1000 + rng.uniform(0.1, 0.4), rng.uniform(0.15, 0.8))
    elif kind == "noise":
        s = Scene(rng, seconds, _voices(rng, int(rng.integers(3, 6))))
        noisy = s.participants[-2:] if len(s.participants) > 3 else s.participants[-1:]
        n = len(s.tracks[noisy[0]])
        for p in noisy:
            s.tracks[p] += synth.noise(rng, n, rng.uniform(-60, -38),
                                       str(rng.choice(["fan", "pink", "brown"])), s.rate)
        talkers = [p for p in s.participants if p not in noisy] + noisy[:1]
        _turn_taking(s, talkers, backchannels=0.03)
        quiet = [p for p in s.participants]
        for t in np.arange(3.0, seconds - 3.0, rng.uniform(4, 8)):
            p = str(rng.choice(quiet))
            what = rng.choice(["keyboard", "door", "cough"])
            if what == "keyboard":
                s.sound(p, synth.keyboard(rng, rng.uniform(2, 6), s.rate, rng.uniform(-40, -25)),
                        t, "keyboard")
            elif what == "door":
                s.sound(p, synth.door_slam(rng, s.rate, rng.uniform(-30, -15)), t, "door")
            else:
                s.sound(p, synth.cough(rng, s.rate, rng.uniform(-30, -18)), t, "cough")
    elif kind == "gains":
        n = int(rng.integers(3, 6))
        levels = np.linspace(-12, -38, n) + rng.uniform(-1, 1, n)
        s = Scene(rng, seconds, {f"p{i + 1}": Voice(float(rng.uniform(100, 230)), float(lv))
                                 for i, lv in enumerate(rng.permutation(levels))})
        _turn_taking(s, s.participants)
    elif kind == "overlap":
        s = Scene(rng, seconds, _voices(rng, int(rng.integers(3, 5))))
        _turn_taking(s, s.participants, overlap=0.5, failed=0.4)
    elif kind == "echo":
        s = Scene(rng, seconds, _voices(rng, int(rng.integers(3, 5))))
        _turn_taking(s, s.participants)
        s.leak()
    elif kind == "muted":
        s = Scene(rng, seconds, _voices(rng, int(rng.integers(4, 7))))
        talkers = s.participants[:3]
        _turn_taking(s, talkers)
        for p in s.participants[3:]:  # listeners muted for the whole call, with a noisy room
            s.tracks[p] += synth.noise(rng, len(s.tracks[p]), rng.uniform(-50, -35), "fan", s.rate)
            s.mute(p, 0, seconds)
        for p in talkers:  # talkers mute between their turns now and then
            spans = spurts(s.speech[p])
            for (a, b), (c, _d) in zip(spans, spans[1:]):
                if c - b > 3000 and rng.random() < 0.5:
                    s.mute(p, b / 1000 + 0.7, c / 1000 - 0.7)
    elif kind == "large":
        n = int(rng.integers(15, 21))
        s = Scene(rng, seconds, _voices(rng, n))
        talkers = s.participants[:int(rng.integers(3, 5))]
        _turn_taking(s, talkers, backchannels=0.08)
        for p in s.participants[len(talkers):]:
            if rng.random() < 0.5:
                s.mute(p, 0, seconds)
            elif rng.random() < 0.3:
                s.sound(p, synth.cough(rng, s.rate, rng.uniform(-30, -20)),
                        rng.uniform(2, seconds - 2), "cough")
    elif kind == "rapid":  # quick exchanges: short turns, short gaps, now and then a cut-in
        s = Scene(rng, seconds, _voices(rng, int(rng.integers(2, 4))))
        _turn_taking(s, s.participants, turn_s=(1.0, 3.0), gap_s=(0.05, 0.5),
                     backchannels=0.03, overlap=0.1)
    elif kind == "crosstalk":  # two of them share a room (and hear each other's voice)
        s = Scene(rng, seconds, _voices(rng, int(rng.integers(3, 6))))
        _turn_taking(s, s.participants, backchannels=0.05)
        s.share_room(s.participants[0], s.participants[1])
    elif kind == "music":  # music playing in one or two rooms, from a radio to a loud TV
        s = Scene(rng, seconds, _voices(rng, int(rng.integers(3, 6))))
        _turn_taking(s, s.participants, backchannels=0.03)
        for p in rng.choice(s.participants, int(rng.integers(1, 3)), replace=False):
            start = rng.uniform(0, seconds / 2)
            end = min(seconds, start + rng.uniform(0.3, 1.0) * seconds)
            s.sound(str(p), synth.music(rng, end - start, s.rate, rng.uniform(-45, -25)),
                    start, "music")
    elif kind == "space":  # an audio space: 25 in the room, 2-4 on stage, the rest listening
        s = Scene(rng, seconds, _voices(rng, 25))
        talkers = s.participants[:int(rng.integers(2, 5))]
        _turn_taking(s, talkers, turn_s=(5.0, 20.0), backchannels=0.0)
        for p in s.participants[len(talkers):]:
            if rng.random() < 0.4:  # muted listeners
                s.mute(p, 0, seconds)
                continue
            if rng.random() < 0.5:  # the others' rooms, some noisy
                s.tracks[p] += synth.noise(rng, len(s.tracks[p]), rng.uniform(-60, -40),
                                           str(rng.choice(["fan", "pink", "brown"])), s.rate)
            for t in np.arange(2.0, seconds - 2.0, 10.0):  # now and then a cough, typing, a 'yeah'
                r, at = rng.random(), t + rng.uniform(0, 8)
                if r < 0.08:
                    s.sound(p, synth.cough(rng, s.rate, rng.uniform(-35, -20)), at, "cough")
                elif r < 0.14:
                    s.sound(p, synth.keyboard(rng, rng.uniform(1, 5), s.rate,
                                              rng.uniform(-45, -28)), at, "keyboard")
                elif r < 0.22:
                    s.say(p, at, rng.uniform(0.15, 0.8))
    elif kind == "laptop":  # laptops playing the call aloud, in rooms that ring
        s = Scene(rng, seconds, _voices(rng, int(rng.integers(3, 6))))
        _turn_taking(s, s.participants)
        for p in s.participants:
            s.reverberate(p, rng.uniform(0.2, 0.6), rng.uniform(3, 12))
        laptops = [p for p in s.participants if rng.random() < 0.6] or s.participants[:1]
        for p in laptops:
            s.laptop_echo(p)
    else:
        raise ValueError(f"unknown scenario type {kind!r} (known: {', '.join(TYPES)})")
    return s


# ----------------------------------------------------------------------------- recorded voices

GAP_MEAN_MS, GAP_SD_MS = 200.0, 450.0
"""Between-speaker intervals of the recorded type (negative: an overlap), after Heldner &
Edlund (2010): about a third of its turn changes start before the holder has finished."""
GAP_RANGE_MS = (-1200.0, 1500.0)
PAUSE_MS = (150.0, 450.0)
"""Within a recorded turn, between two prompts of one speaker (under the merge gap)."""


class RecordedScene(Scene):
    """A Scene whose utterances are recorded prompts of each participant's voice."""

    langs: dict[str, str]

    def prompt(self, p: str, start_s: float, x: np.ndarray) -> float:
        """Recorded clip ``x`` (unit RMS) at ``p``'s level, jittered +-2 dB."""
        level = self.voices[p].level_dbov + self.rng.uniform(-2, 2)
        return self.place(p, x * synth.dbov_gain(level), start_s)

    def say(self, p: str, start_s: float, seconds: float) -> float:
        """A backchannel: one short recorded word (``seconds`` is ignored)."""
        short = recorded.prompts(self.langs[p])[1]
        return self.prompt(p, start_s, recorded.clip(short[int(self.rng.integers(len(short)))]))

    def turn(self, p: str, start_s: float, seconds: float) -> float:
        """Prompts of ``p`` until ``seconds`` are filled (at least one)."""
        long = recorded.prompts(self.langs[p])[0]
        t, end = start_s, start_s + seconds
        while True:
            t = self.prompt(p, t, recorded.clip(long[int(self.rng.integers(len(long)))]))
            if end - t < 0.5 or t >= self.seconds:
                return t
            t += self.rng.uniform(*PAUSE_MS) / 1000


def recorded_scene(seed: int, seconds: float = 60.0) -> Scene:
    """Two to four real voices taking turns with conversational gaps and overlaps.

    The synthetic types have one kind of voice and interruptions that overlap the holder
    by 0.3-2 s. Real turn-taking is different: most turn changes land within a few hundred
    milliseconds of the holder's end, a third or more of them *before* it (Heldner &
    Edlund, "Pauses, gaps and overlaps in conversations", J. Phonetics 38 (2010) 555-568:
    between-speaker intervals cluster around 0 to +200 ms, spread over roughly +-500 ms).
    Those short overlaps are what a switching rule meets first in a real call."""
    rng = np.random.default_rng([1000, seed])
    n = int(rng.integers(2, 5))
    langs = [str(x) for x in rng.permutation(recorded.LANGUAGES)[:n]]
    voices = {f"p{i + 1}": Voice(0.0, float(rng.uniform(-30, -18))) for i in range(n)}
    s = RecordedScene(rng, seconds, voices)
    s.langs = dict(zip(voices, langs))
    end_s = seconds - 1.0
    t, current = 0.5, None
    while t < end_s - 2.0:
        p = str(rng.choice([q for q in s.participants if q != current]))
        turn_end = s.turn(p, t, min(rng.uniform(2.5, 12.0), end_s - t))
        listeners = [q for q in s.participants if q != p]
        for k in np.arange(t + 1.0, turn_end - 1.0, 1.0):
            if rng.random() < 0.08:
                s.say(str(rng.choice(listeners)), k + rng.uniform(0, 0.5), 0.0)
        gap_ms = float(np.clip(rng.normal(GAP_MEAN_MS, GAP_SD_MS), *GAP_RANGE_MS))
        # an overlap never reaches back before the turn it overlaps had begun
        t, current = max(turn_end + gap_ms / 1000, t + 0.5), p
    return s


def levels_rows(tracks: dict[str, np.ndarray], rate: int) -> list[tuple[int, str, int, int]]:
    """(t_ms, participant, RFC 6464 level, V bit) per 20 ms packet, as a sender reports
    them: the packet's RMS level, and webrtcvad's decision (mode 2) as the V bit."""
    per = rate * PACKET_MS // 1000
    pids = list(tracks)
    n = min(len(x) for x in tracks.values()) // per
    frames = {p: synth.to_int16(tracks[p])[: n * per].reshape(n, per) for p in pids}
    levels = {p: dbov_to_level(pcm_level_dbov(frames[p])) for p in pids}
    vads = VadBank()
    voice = {}
    for slot, p in enumerate(pids):
        vads.reset(slot, DEFAULT_MODE)
        voice[p] = vads.classify([slot] * n, [f.tobytes() for f in frames[p]], rate)
    return [(k * PACKET_MS, p, int(levels[p][k]), int(voice[p][k]))
            for k in range(n) for p in pids]


def write_files(d: str | pathlib.Path, tracks: dict[str, np.ndarray], rate: int,
                truth: dict) -> None:
    """One conversation on disk: p*.wav, levels.csv (as senders report) and truth.json."""
    d = pathlib.Path(d)
    d.mkdir(parents=True, exist_ok=True)
    for p, x in tracks.items():
        synth.write_wav(d / f"{p}.wav", x, rate)
    with open(d / "levels.csv", "w") as f:
        f.write("t_ms,participant,level,voice\n")
        f.writelines(f"{t},{p},{lv},{v}\n" for t, p, lv, v in levels_rows(tracks, rate))
    (d / "truth.json").write_text(json.dumps(truth, indent=1))


def write(out: str | pathlib.Path, name: str, s: Scene) -> dict:
    """Write the scenario's WAVs, levels.csv and truth.json under ``out/name``."""
    duration_ms = int(s.seconds * 1000)
    floor, changes = derive_floor(s.speech, duration_ms)
    truth = {"scenario": name, "type": name.rsplit("_", 1)[0], "duration_ms": duration_ms,
             "participants": s.participants, "speech": s.speech, "nonspeech": s.nonspeech,
             "floor": floor, "changes": changes}
    write_files(pathlib.Path(out) / name, s.finish(), s.rate, truth)
    return truth


def write_all(out: str | pathlib.Path, types: tuple[str, ...] = TYPES, variants: int = 3,
              seconds: float = 60.0) -> list[str]:
    names = []
    for kind in types:
        for v in range(variants):
            name = f"{kind}_{v:02d}"
            write(out, name, scene(kind, v, seconds))
            names.append(name)
    return names


MIN_SECONDS, MAX_SECONDS = 5.0, 600.0
"""--seconds: a shorter scene holds no turn to judge (and `large` needs 4 s to place its
coughs); a longer one is built in memory as float tracks (`large`: up to 20 participants,
about 0.3 GB a minute) before it is written."""


def seconds_arg(text: str) -> float:
    """argparse type of --seconds: MIN_SECONDS..MAX_SECONDS."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not MIN_SECONDS <= v <= MAX_SECONDS:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{text} is outside {MIN_SECONDS:g}..{MAX_SECONDS:g}")
    return v


def variants_arg(text: str) -> int:
    """argparse type of --variants: at least 1 (0 would write nothing)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} is not >= 1")
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="speakerswitch scenarios", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--variants", type=variants_arg, default=3)
    ap.add_argument("--seconds", type=seconds_arg, default=60.0)
    a = ap.parse_args(argv)
    types = tuple(t for t in a.types.split(",") if t)
    bad = [t for t in types if t not in TYPES + (RECORDED,)]
    if bad or not types:
        print(f"speakerswitch scenarios: --types: {f'unknown {bad}' if bad else 'none given'} "
              f"(known: {', '.join(TYPES + (RECORDED,))})", file=sys.stderr)
        return 2
    if RECORDED in types:
        if not recorded.available():
            print(f"speakerswitch scenarios: --types {RECORDED}: needs Debian's "
                  f"asterisk-core-sounds-{{{','.join(recorded.LANGUAGES)}}}-wav in "
                  f"{recorded.SOUNDS} (make recorded-speech)", file=sys.stderr)
            return 2
    out = pathlib.Path(a.out)
    if out.exists() and not out.is_dir():
        print(f"speakerswitch scenarios: --out: {out} is a file, not a directory",
              file=sys.stderr)
        return 2
    try:
        out.mkdir(parents=True, exist_ok=True)  # an unwritable --out fails before any work
        names = write_all(out, types, a.variants, a.seconds)
    except OSError as e:  # an unwritable --out
        print(f"speakerswitch scenarios: --out: {e.filename or out}: {e.strerror or e}",
              file=sys.stderr)
        return 2
    except MemoryError:
        print(f"speakerswitch scenarios: --seconds {a.seconds:g}: not enough memory for "
              "scenes this long (try fewer seconds)", file=sys.stderr)
        return 2
    print(f"wrote {len(names)} scenarios to {a.out}", file=sys.stderr)
    return 0
