"""webrtcvad per participant on speech-like and non-speech signals."""
import numpy as np
import pytest

from dsp.vad import VadBank
from service.tools.synth import noise, speech_like, to_int16


def frames(x, rate, ms=20):
    n = rate * ms // 1000
    pcm = to_int16(x)
    return [pcm[k * n:(k + 1) * n].tobytes() for k in range(len(pcm) // n)]


def voiced_share(x, rate, slot=0):
    bank = VadBank()
    fr = frames(x, rate)
    return float(np.mean(bank.classify([slot] * len(fr), fr, rate)))


def test_speech_like_signal_is_mostly_voiced():
    rng = np.random.default_rng(3)
    for rate in (8000, 16000, 32000, 48000):
        assert voiced_share(speech_like(rng, 3.0, rate, 140.0, -25.0), rate) > 0.7


def test_silence_and_quiet_noise_are_not_voiced():
    rng = np.random.default_rng(4)
    assert voiced_share(np.zeros(16000), 16000) == 0.0
    assert voiced_share(noise(rng, 48000, -70.0, "white"), 16000) < 0.1


def test_each_slot_has_its_own_detector():
    bank = VadBank()
    bank.reset(0)
    bank.reset(5)
    assert bank._vads[0] is not bank._vads[5]


@pytest.mark.parametrize("rate", [32000, 48000])
def test_decimation_for_the_vad_is_the_mean_of_each_group_to_the_bit(rate):
    """pcm.for_vad sums k neighbours with strided adds; it must give exactly the float32
    mean numpy gives (what the VAD decided on before), rounding ties included."""
    from dsp import pcm

    rng = np.random.default_rng(rate)
    k = rate // pcm.VAD_RATE_HZ
    for n in (rate // 50, rate // 50 + 1, rate // 100):
        loud = rng.integers(-32768, 32768, size=(40, n)).astype(np.int16)
        quiet = rng.integers(-3, 4, size=(40, n)).astype(np.int16)  # many .5 means
        for frames in (loud, quiet):
            m = n - n % k
            want = np.round(frames[:, :m].reshape(40, -1, k).mean(axis=2, dtype=np.float32))
            got, got_rate = pcm.for_vad(frames, rate)
            assert got_rate == pcm.VAD_RATE_HZ
            assert got == [row.astype("<i2").tobytes() for row in want]
