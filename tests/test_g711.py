"""G.711 mu-law / A-law: exhaustive against audioop, ITU reference points, properties."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from voxtrio import codecs
from voxtrio.codecs import alaw_decode, alaw_encode, mulaw_decode, mulaw_encode

with warnings.catch_warnings():
    # audioop is deprecated (gone in 3.13); it is only the oracle here, never used by voxtrio.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

Encode = Callable[[np.ndarray], bytes]
Decode = Callable[[bytes | bytearray | memoryview], np.ndarray]

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
ALL_BYTES = bytes(range(256))


def mulaw_step(codes: np.ndarray) -> np.ndarray:
    """Quantiser step (16-bit units) of each mu-law code's segment: 8 << segment."""
    segment = ((~codes.astype(np.int32)) >> 4) & 0x07
    step: np.ndarray = np.left_shift(8, segment)
    return step


def alaw_step(codes: np.ndarray) -> np.ndarray:
    """Quantiser step of each A-law code's segment: 16 in segments 0 and 1, then doubling."""
    segment = ((codes.astype(np.int32) ^ 0x55) >> 4) & 0x07
    step: np.ndarray = np.left_shift(8, np.maximum(segment, 1))
    return step


# (name, encode, decode, step, the other law's decode)
LAWS = [
    pytest.param(mulaw_encode, mulaw_decode, mulaw_step, alaw_decode, id="mulaw"),
    pytest.param(alaw_encode, alaw_decode, alaw_step, mulaw_decode, id="alaw"),
]
LAW = st.sampled_from(
    [
        (mulaw_encode, mulaw_decode, mulaw_step, alaw_decode),
        (alaw_encode, alaw_decode, alaw_step, mulaw_decode),
    ]
)
PCM = hnp.arrays(np.int16, st.integers(0, 2_000))
CODES = st.binary(max_size=2_000)


def codes_of(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


# --- the oracle: every input, both laws -------------------------------------------


def test_mulaw_encode_equals_audioop_for_every_int16() -> None:
    assert mulaw_encode(ALL_INT16) == audioop.lin2ulaw(ALL_INT16.tobytes(), 2)


def test_alaw_encode_equals_audioop_for_every_int16() -> None:
    assert alaw_encode(ALL_INT16) == audioop.lin2alaw(ALL_INT16.tobytes(), 2)


def test_mulaw_decode_equals_audioop_for_every_byte() -> None:
    want = np.frombuffer(audioop.ulaw2lin(ALL_BYTES, 2), dtype=np.int16)
    np.testing.assert_array_equal(mulaw_decode(ALL_BYTES), want)


def test_alaw_decode_equals_audioop_for_every_byte() -> None:
    want = np.frombuffer(audioop.alaw2lin(ALL_BYTES, 2), dtype=np.int16)
    np.testing.assert_array_equal(alaw_decode(ALL_BYTES), want)


# --- published reference points (ITU-T G.711 tables 1 and 2), independent of audioop ---
# G.711 speaks of 13-bit (A-law) and 14-bit (mu-law) uniform codes; 16-bit PCM carries
# them in its top bits, so a 16-bit level is the table's level times 8 (A) or 4 (mu).

MULAW_ENCODE_POINTS = [
    (0, 0xFF),  # positive zero, the idle channel
    (32767, 0x80),  # positive full scale: segment 7, mantissa 15, all bits inverted
    (-32768, 0x00),  # negative full scale
    (8, 0xFE),  # 14-bit 2 is the first level above zero
    # 16-bit -1 is 14-bit -1 after the arithmetic shift, the negative twin of 14-bit 2's
    # interval (G.711 negative zero, 0x7F, takes only an exact 0 there).
    (-1, 0x7E),
]
MULAW_DECODE_POINTS = [(0xFF, 0), (0x7F, 0), (0xFE, 8), (0x80, 32124), (0x00, -32124)]
ALAW_ENCODE_POINTS = [
    (0, 0xD5),  # smallest positive level; even bits inverted (0x80 ^ 0x55)
    (-1, 0x55),  # smallest negative level
    (32767, 0xAA),  # positive full scale: segment 7, mantissa 15
    (-32768, 0x2A),
]
ALAW_DECODE_POINTS = [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xD4, 24)]


@pytest.mark.parametrize(("pcm", "code"), MULAW_ENCODE_POINTS)
def test_mulaw_encode_reference_points(pcm: int, code: int) -> None:
    assert mulaw_encode(np.array([pcm], dtype=np.int16)) == bytes([code])


@pytest.mark.parametrize(("code", "pcm"), MULAW_DECODE_POINTS)
def test_mulaw_decode_reference_points(code: int, pcm: int) -> None:
    assert mulaw_decode(bytes([code])).tolist() == [pcm]


@pytest.mark.parametrize(("pcm", "code"), ALAW_ENCODE_POINTS)
def test_alaw_encode_reference_points(pcm: int, code: int) -> None:
    assert alaw_encode(np.array([pcm], dtype=np.int16)) == bytes([code])


@pytest.mark.parametrize(("code", "pcm"), ALAW_DECODE_POINTS)
def test_alaw_decode_reference_points(code: int, pcm: int) -> None:
    assert alaw_decode(bytes([code])).tolist() == [pcm]


def test_level_counts_match_the_standard() -> None:
    # mu-law: 255 distinct levels (two codes for zero); A-law: 256, none of them zero.
    assert len(set(mulaw_decode(ALL_BYTES).tolist())) == 255
    a_levels = set(alaw_decode(ALL_BYTES).tolist())
    assert len(a_levels) == 256
    assert 0 not in a_levels


# --- properties --------------------------------------------------------------------


@given(law=LAW, data=CODES)
def test_decode_encode_decode_is_decode(law, data: bytes) -> None:
    encode, decode, _, _ = law
    once = decode(data)
    np.testing.assert_array_equal(decode(encode(once)), once)


@given(data=CODES)
def test_alaw_encode_inverts_decode_on_bytes(data: bytes) -> None:
    assert alaw_encode(alaw_decode(data)) == data


@given(data=CODES)
def test_mulaw_encode_inverts_decode_except_negative_zero(data: bytes) -> None:
    # 0x7F (negative zero) decodes to 0, which encodes as positive zero 0xFF: the one
    # byte that does not come back.
    want = data.replace(b"\x7f", b"\xff")
    assert mulaw_encode(mulaw_decode(data)) == want


@pytest.mark.parametrize(("encode", "decode", "step", "other"), LAWS)
def test_encode_inverts_decode_exhaustively(encode, decode, step, other) -> None:
    back = codes_of(encode(decode(ALL_BYTES)))
    changed = np.flatnonzero(back != np.arange(256))
    assert changed.tolist() == ([0x7F] if encode is mulaw_encode else [])


@given(law=LAW, a=st.integers(-32768, 32767), b=st.integers(-32768, 32767))
def test_quantiser_is_monotone(law, a: int, b: int) -> None:
    encode, decode, _, _ = law
    lo, hi = sorted((a, b))
    levels = decode(encode(np.array([lo, hi], dtype=np.int16)))
    assert levels[0] <= levels[1]


@pytest.mark.parametrize(("encode", "decode", "step", "other"), LAWS)
def test_quantiser_is_monotone_exhaustively(encode, decode, step, other) -> None:
    assert np.all(np.diff(decode(encode(ALL_INT16)).astype(np.int32)) >= 0)


@given(law=LAW, pcm=PCM)
def test_round_trip_error_within_segment_step(law, pcm: np.ndarray) -> None:
    encode, decode, step, _ = law
    codes = codes_of(encode(pcm))
    assert len(codes) == len(pcm)
    err = np.abs(decode(encode(pcm)).astype(np.int32) - pcm.astype(np.int32))
    assert np.all(err <= step(codes))


@given(law=LAW, pcm=PCM)
def test_round_trip_error_is_half_a_step_below_clipping(law, pcm: np.ndarray) -> None:
    # Midpoint reconstruction: half a step plus what the shift to 14/13 bits drops,
    # for every sample not beyond the largest level (mu-law clips above +-32124).
    encode, decode, step, _ = law
    codes = codes_of(encode(pcm))
    shift_loss = 4 if encode is mulaw_encode else 8
    x = pcm.astype(np.int32)
    inside = np.abs(x) <= 32124
    err = np.abs(decode(encode(pcm)).astype(np.int32) - x)
    assert np.all(err[inside] <= step(codes)[inside] // 2 + shift_loss)


@given(law=LAW, pcm=hnp.arrays(np.int16, st.integers(1, 500)))
def test_the_other_law_does_not_decode_it(law, pcm: np.ndarray) -> None:
    # Fails a do-nothing codec (wrong length, or bytes that decode near x under either
    # law) and a swapped one: no G.711 byte of one law decodes within a segment step of
    # its input under the other law.
    encode, decode, step, other = law
    codes = codes_of(encode(pcm))
    x = pcm.astype(np.int32)
    assert np.all(np.abs(decode(encode(pcm)).astype(np.int32) - x) <= step(codes))
    assert np.all(np.abs(other(encode(pcm)).astype(np.int32) - x) > step(codes))


def test_the_laws_never_share_a_code() -> None:
    assert not np.any(codes_of(mulaw_encode(ALL_INT16)) == codes_of(alaw_encode(ALL_INT16)))


@given(law=LAW, pcm=PCM, data=st.data())
def test_chunking_does_not_change_the_bytes(law, pcm: np.ndarray, data: st.DataObject) -> None:
    encode, decode, _, _ = law
    cuts = sorted(data.draw(st.lists(st.integers(0, len(pcm)), max_size=10), label="cuts"))
    pieces = list(itertools.pairwise([0, *cuts, len(pcm)]))
    whole = encode(pcm)
    assert b"".join(encode(pcm[a:b]) for a, b in pieces) == whole
    np.testing.assert_array_equal(
        np.concatenate([decode(whole[a:b]) for a, b in pieces]), decode(whole)
    )


@given(law=LAW, pcm=PCM)
def test_shapes_and_layouts_agree(law, pcm: np.ndarray) -> None:
    encode, decode, _, _ = law
    whole = encode(pcm)
    assert encode(pcm.reshape(-1, 1)) == whole
    assert encode(np.repeat(pcm, 2)[::2]) == whole  # strided view
    out = decode(whole)
    assert out.dtype == np.int16
    assert out.shape == (len(pcm),)
    np.testing.assert_array_equal(decode(bytearray(whole)), out)
    np.testing.assert_array_equal(decode(memoryview(whole)), out)


def test_empty_input() -> None:
    for encode, decode in ((mulaw_encode, mulaw_decode), (alaw_encode, alaw_decode)):
        assert encode(np.zeros(0, np.int16)) == b""
        assert encode(np.zeros((0, 1), np.int16)) == b""
        assert decode(b"").shape == (0,)
        assert decode(b"").dtype == np.int16


def test_decode_returns_a_writable_copy() -> None:
    out = mulaw_decode(b"\x00\x80")
    out[0] = 1  # must not touch the decode table
    assert mulaw_decode(b"\x00\x80").tolist() == [-32124, 32124]


# --- misuse --------------------------------------------------------------------------

ENCODERS = [pytest.param(mulaw_encode, id="mulaw"), pytest.param(alaw_encode, id="alaw")]
DECODERS = [pytest.param(mulaw_decode, id="mulaw"), pytest.param(alaw_decode, id="alaw")]


@pytest.mark.parametrize("encode", ENCODERS)
def test_encode_rejects_stereo(encode: Encode) -> None:
    with pytest.raises(ValueError, match=r"2 channels.*downmix"):
        encode(np.zeros((10, 2), np.int16))


@pytest.mark.parametrize("encode", ENCODERS)
@pytest.mark.parametrize("shape", [(), (2, 3, 1), (4, 1, 1)])
def test_encode_rejects_other_shapes(encode: Encode, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="shape"):
        encode(np.zeros(shape, np.int16))


@pytest.mark.parametrize("encode", ENCODERS)
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint16, np.uint8, ">i2"])
def test_encode_rejects_other_dtypes(encode: Encode, dtype: npt.DTypeLike) -> None:
    with pytest.raises(TypeError, match="int16"):
        encode(np.zeros(4, dtype=dtype))


@pytest.mark.parametrize("encode", ENCODERS)
@pytest.mark.parametrize("value", [[0, 1, 2], b"\x00\x00", 7])
def test_encode_rejects_non_arrays(encode: Encode, value: object) -> None:
    with pytest.raises(TypeError, match="numpy array"):
        encode(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize("value", ["abc", [1, 2], np.zeros(3, np.uint8), 5])
def test_decode_rejects_non_bytes(decode: Decode, value: object) -> None:
    with pytest.raises(TypeError, match="bytes, bytearray or memoryview"):
        decode(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("decode", DECODERS)
def test_decode_rejects_wide_memoryviews(decode: Decode) -> None:
    with pytest.raises(TypeError, match="one byte per sample"):
        decode(memoryview(bytes(6)).cast("h"))


@pytest.mark.parametrize("decode", DECODERS)
def test_decode_rejects_non_contiguous_memoryviews(decode: Decode) -> None:
    with pytest.raises(ValueError, match="contiguous"):
        decode(memoryview(b"abcdef")[::2])


def test_exported_from_codecs() -> None:
    for name in ("mulaw_encode", "mulaw_decode", "alaw_encode", "alaw_decode"):
        assert name in codecs.__all__
        assert callable(getattr(codecs, name))
