"""service/runtime/g711.py decodes every G.711 code word as the standard's decoder does."""
import warnings

import numpy as np
import pytest

from service.runtime import g711


def test_known_code_words():
    assert g711.MU_LAW[[0xFF, 0x7F, 0x00, 0x80]].tolist() == [0, 0, -32124, 32124]
    assert g711.A_LAW[[0xD5, 0x55, 0x80, 0x00]].tolist() == [8, -8, 5504, -5504]


def test_every_code_word_as_python_audioop_decodes_it():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # gone in Python 3.13
    words = bytes(range(256))
    assert g711.decode(words, g711.MU_LAW) == audioop.ulaw2lin(words, 2)
    assert g711.decode(words, g711.A_LAW) == audioop.alaw2lin(words, 2)


def test_tables_are_monotonic_within_each_sign():
    for table in (g711.MU_LAW, g711.A_LAW):
        values = np.sort(table.astype(int))
        assert len(set(values.tolist())) >= 254 and values[0] < 0 < values[-1]
