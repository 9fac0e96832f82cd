"""Build the bundled demo conversation (``service/demo/data/``) from a script, with
Debian's ``espeak-ng`` (the voices) and ``opusenc`` (opus-tools, the compressed audio).

    python -m service.demo.build --out service/demo/data      # make demo-data

Only the maintainers run this, when the script changes; the output is committed, so
``speakerswitch demo`` needs neither tool. Why espeak-ng rather than ``synth.speech_like``:
a newcomer should *hear* who speaks and understand the words, and recognise a "yeah" as an
interjection that must not switch; the synthetic vowels of the scenarios are right for
measuring, not for listening.

Output:
  levels.csv.gz   what the media server streams: RFC 6464 level and webrtcvad V bit per
                  participant per 20 ms (``scenarios.levels_rows``, as a browser sends them)
  events.jsonl    the camera toggles, in the replay events format
  conversation.ogg  the mix, Ogg Opus mono, played by the page in step with the room
  script.json     who says what when (captions), the floor truth, the duration
"""
from __future__ import annotations

import argparse
import gzip
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import wave

import numpy as np
from scipy import signal

from ..tools import synth
from ..tools.scenarios import derive_floor, levels_rows

RATE = 16000
OPUS_KBPS = 24
TAIL_S = 2.0

VOICES = {
    # participant: (espeak-ng voice, pitch 0-99, words per minute, speech dBov,
    #               background kind, background dBov)
    "alice": ("en-us+f3", 55, 150, -22.0, "pink", -64.0),
    "bob": ("en-gb+m3", 40, 145, -26.0, "fan", -55.0),
    "chen": ("en-us+m1", 30, 155, -20.0, "pink", -66.0),
    "dana": ("en-gb-x-rp+f2", 60, 150, -24.0, "pink", -62.0),
}
"""Four people on different microphones: bob sits by a fan (his background is loud, so a
level meter alone would keep picking him), chen is loud, bob is quiet."""

SCRIPT = [
    # turns: (participant, text, gap in s after the previous turn; negative: overlap)
    # interjections: ("~", participant, text, at share of the turn in progress)
    # a cough: ("~cough", participant, None, at share of the turn in progress)
    ("alice", "Good morning everyone. Thanks for joining. Today we look at the new room "
              "viewer, and at how the main video feed follows whoever is talking.", 0.6),
    ("~", "bob", "Morning.", 0.85),
    ("bob", "Morning Alice. I tried it yesterday with a real meeting of twelve people. The "
            "big tile moved to each new speaker within half a second or so.", 0.5),
    ("~", "chen", "Yeah.", 0.55),
    ("chen", "That matches what I measured. The median delay after a real turn change is "
             "about three hundred milliseconds, and it does not jump on short remarks.", 0.7),
    ("~", "alice", "Right.", 0.5),
    ("alice", "Dana, you have been quiet. Your camera is off, so watch what happens to "
              "the main tile when you answer.", 0.6),
    ("dana", "Sure. I am speaking now, but my camera is still off, so the feed stays on "
             "the last person with video. The page shows that I hold the floor, with a "
             "camera off badge.", 0.6),
    ("~", "bob", "Mm hmm.", 0.4),
    ("dana", "And now I turn my camera on, and the feed should come straight to me, "
             "without waiting for the usual debounce.", 0.3),
    ("bob", "Nice. What about noise? My fan is loud, and it never stole the screen.", 0.7),
    ("chen", "The noise floor adapts per participant. A fan or a hot microphone only "
             "raises that person's own bar.", 0.6),
    ("~", "dana", "Okay.", 0.45),
    ("alice", "Good. Try the pin button on a tile: the feed stays on that person until "
              "you unpin, and detection keeps running underneath.", 0.6),
    ("~cough", "bob", None, 0.35),
    ("~", "chen", "Yeah, yeah.", 0.7),
    ("bob", "And the timeline at the bottom shows the last minute: levels, who was shown, "
            "and why each switch happened.", 0.6),
    ("dana", "One more thing. If two people talk at once, the one already holding the "
             "floor keeps it, unless the other one really takes over.", 0.6),
    ("bob", "Let me show that. I will explain the forwarding set, and Chen, you cut in. "
            "The forwarding set is the list of cameras the media server should send, "
            "the main speaker first, then the others by how recently they spoke, and", 0.6),
    ("chen", "Sorry to cut in, but that is exactly the point. A real interruption takes "
             "the floor after a second or so, a short remark never does.", -1.6),
    ("alice", "And it did move to Chen. Bob, what does an operator see when a room "
              "misbehaves in production?", 0.6),
    ("bob", "The rooms list shows every room with its participants, the current speaker, "
            "and switches per minute. Let me turn my camera off for a moment. Now the feed "
            "has moved to the last person with video, while I keep talking.", 0.6),
    ("~", "dana", "I see.", 0.9),
    ("chen", "And every decision carries its reason: first speaker, dominant speaker, "
             "video on, video off, pinned, unpinned, or left.", 0.6),
    ("dana", "That covers it for me. It is easy to see why it switched to someone.", 0.7),
    ("alice", "Great. Let us wrap up. I will send the notes after the call. Thanks "
              "everyone.", 0.7),
    ("~", "chen", "Thanks.", 0.8),
]
EVENTS = [
    # (participant, video on, at: None = the start, or (turn index, share of that turn))
    ("dana", False, None), ("alice", True, None), ("bob", True, None), ("chen", True, None),
    ("dana", True, (5, 0.45)),
    ("bob", False, (14, 0.45)),
]
"""Dana starts with her camera off, speaks a turn without it, then turns it on in the
middle of her second turn; Bob turns his off while he talks. Every camera is set at the
start, so each loop of the demo starts alike."""


def speak(text: str, voice: tuple, workdir: pathlib.Path) -> np.ndarray:
    """espeak-ng's utterance at 16 kHz, float, unit RMS over its sounding part."""
    name, pitch, wpm = voice[0], voice[1], voice[2]
    wav = workdir / "u.wav"
    subprocess.run(["espeak-ng", "-v", name, "-p", str(pitch), "-s", str(wpm), "-w",
                    str(wav), text], check=True)
    with wave.open(str(wav)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768
    x = signal.resample_poly(x, RATE, rate) if rate != RATE else x
    nz = np.flatnonzero(np.abs(x) > 1e-3)  # trim espeak's leading/trailing silence
    x = x[nz[0]:nz[-1] + 1] if len(nz) else x
    active = np.abs(x) > 1e-3
    return x / np.sqrt(np.mean(x[active] ** 2))


def build(out: pathlib.Path) -> dict:
    for tool in ("espeak-ng", "opusenc"):
        if shutil.which(tool) is None:
            raise SystemExit(f"demo_build: needs {tool} (apt-get install espeak-ng opus-tools)")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        rng = np.random.default_rng(7)
        clips = []
        for item in SCRIPT:
            if item[0] == "~cough":
                clip = synth.unit_rms(synth.cough(rng, RATE, 0.0))
            else:
                clip = speak(item[2] if item[0] == "~" else item[1],
                             VOICES[item[1] if item[0] == "~" else item[0]], work)
            clips.append((item, clip))
        placed = []  # (participant, start s, clip, text)
        t = 0.0
        last_turn = None
        for item, clip in clips:
            if item[0].startswith("~"):
                _, pid, text, share = item
                start = last_turn[0] + share * last_turn[1]
                text = text or "(coughs)"
            else:
                pid, text, gap = item
                start = t + gap
                t = max(t, start + len(clip) / RATE)
                last_turn = (start, len(clip) / RATE)
            placed.append((pid, start, clip, text))
        duration_s = np.ceil((t + TAIL_S) / 0.02) * 0.02
        n = int(round(duration_s * RATE))
        tracks = {p: synth.noise(rng, n, v[5], v[4], RATE) for p, v in VOICES.items()}
        speech: dict[str, list[list[int]]] = {p: [] for p in VOICES}
        lines = []
        for pid, start, clip, text in placed:
            span = synth.add_at(tracks[pid], clip * synth.dbov_gain(VOICES[pid][3]), start, RATE)
            speech[pid].append(list(span))
            lines.append({"participant": pid, "start_ms": span[0], "end_ms": span[1],
                          "text": text})
        turns = [ln for ln, (item, _) in zip(lines, clips) if not item[0].startswith("~")]
        events = []
        for pid, on, at in EVENTS:
            t_ms = 0 if at is None else int(turns[at[0]]["start_ms"] + at[1] * (
                turns[at[0]]["end_ms"] - turns[at[0]]["start_ms"])) // 20 * 20
            events.append({"t_ms": t_ms, "participant": pid, "video": on})
        duration_ms = int(round(duration_s * 1000))
        floor, changes = derive_floor(speech, duration_ms)
        with gzip.open(out / "levels.csv.gz", "wt", compresslevel=9) as f:
            f.write("t_ms,participant,level,voice\n")
            f.writelines(f"{t},{p},{lv},{v}\n" for t, p, lv, v in levels_rows(tracks, RATE))
        (out / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
        mix = sum(tracks.values())
        mix = mix * (0.5 / max(1e-9, float(np.max(np.abs(mix)))))
        synth.write_wav(work / "mix.wav", mix, RATE)
        subprocess.run(["opusenc", "--quiet", "--bitrate", str(OPUS_KBPS), "--downmix-mono",
                        str(work / "mix.wav"), str(out / "conversation.ogg")], check=True)
    script = {"room_id": "demo", "duration_ms": duration_ms, "participants": sorted(VOICES),
              "lines": sorted(lines, key=lambda ln: ln["start_ms"]), "events": events,
              "floor": floor, "changes": changes}
    (out / "script.json").write_text(json.dumps(script, indent=1) + "\n")
    return script


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "data"))
    a = ap.parse_args(argv)
    script = build(pathlib.Path(a.out))
    sizes = {p.name: p.stat().st_size for p in sorted(pathlib.Path(a.out).iterdir())}
    print(f"{a.out}: {script['duration_ms'] / 1000:.0f} s, {len(script['lines'])} lines, "
          f"{len(script['changes'])} floor changes; "
          + ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in sizes.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
