"""RFC 6464 conversions and PCM levels."""
import numpy as np
import pytest

from dsp import pcm, rfc6464


def test_full_scale_square_is_0_dbov_and_sine_is_minus_3():
    n = 320
    square = np.where(np.arange(n) % 40 < 20, 32767, -32768).astype(np.int16)
    sine = np.round(32767 * np.sin(2 * np.pi * 1000 * np.arange(n) / 16000)).astype(np.int16)
    lv = pcm.level_dbov(np.stack([square, sine]))
    assert lv[0] == pytest.approx(0.0, abs=0.01)
    assert lv[1] == pytest.approx(-3.01, abs=0.02)


def test_digital_silence_reads_minus_127():
    assert pcm.level_dbov(np.zeros((2, 160), np.int16)).tolist() == [-127.0, -127.0]


def test_level_scales_by_20_log_amplitude():
    x = np.round(1000 * np.sin(2 * np.pi * 440 * np.arange(480) / 48000)).astype(np.int16)
    lv = pcm.level_dbov(np.stack([x, (x // 10).astype(np.int16)]))
    assert lv[0] - lv[1] == pytest.approx(20.0, abs=0.1)


@pytest.mark.parametrize("rate,ms", [(8000, 10), (16000, 20), (32000, 30), (48000, 20)])
def test_frame_ms_accepts_webrtcvad_lengths(rate, ms):
    assert pcm.frame_ms(2 * rate * ms // 1000, rate) == ms


@pytest.mark.parametrize("n_bytes,rate", [(641, 16000), (600, 16000), (0, 16000), (1920, 8000)])
def test_frame_ms_refuses_other_lengths(n_bytes, rate):
    assert pcm.frame_ms(n_bytes, rate) is None


def test_header_bytes_round_trip():
    level = np.array([0, 30, 127, 64])
    voice = np.array([1, 0, 0, 1])
    raw = rfc6464.header_bytes(level, voice)
    assert raw == bytes([0x80, 30, 127, 0x80 | 64])
    dbov, v = rfc6464.split_header_bytes(raw)
    assert dbov.tolist() == [0.0, -30.0, -127.0, -64.0]
    assert v.tolist() == [1, 0, 0, 1]


def test_dbov_to_level_rounds_half_up_and_clips():
    assert rfc6464.dbov_to_level(np.array([-20.5, -20.4, 3.0, -200.0])).tolist() == [21, 20, 0, 127]


def test_vad_input_is_decimated_to_16k_by_averaging():
    frames = np.arange(2 * 960, dtype=np.int16).reshape(2, 960)
    out, rate = pcm.for_vad(frames, 48000)
    assert rate == 16000 and len(out) == 2
    first = np.frombuffer(out[0], "<i2")
    assert len(first) == 320 and first[:3].tolist() == [1, 4, 7]   # mean of 0,1,2 / 3,4,5 ...
    same, rate16 = pcm.for_vad(frames[:, :320], 16000)
    assert rate16 == 16000 and same[0] == frames[0, :320].tobytes()
