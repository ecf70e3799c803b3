"""The unified framer against the previous ``CodeFramer``, kept here as an oracle.

``voxtrio.codecs.g711_stream.CodeFramer`` used to walk the frame grid itself, over
bytes of G.711 codes. It is now a thin use of :class:`~voxtrio.codecs.audio.Reframer`,
which frames G.711 formats (uint8 codes, mono) on its own grid. :class:`OldCodeFramer`
below is the previous implementation, copied verbatim (only renamed) from
``voxtrio/codecs/g711_stream.py`` before it was removed: the reference model. For random
code streams, random chunkings (bytes, bytearray, memoryview, uint8 ``(n,)`` and
``(n, 1)`` arrays), random flush points and random forward moves of ``next_pts``, the
new ``CodeFramer`` and a bare ``Reframer(..., ).flush(pad=False)`` must emit exactly
the frames the oracle did (pts, samples, bytes, padding, encoding, rate) and agree on
``next_pts`` and ``pending_samples`` after every step.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.audio import AudioFormat, AudioFrame, FrameMs, build_frame, frame_fraction
from voxtrio.codecs.audio import Reframer
from voxtrio.codecs.g711_stream import CodeFramer, silence_code

# ------------------------------------------------------------------------------------
# THE PREVIOUS IMPLEMENTATION, KEPT AS AN ORACLE (do not "fix" it: it is the reference).
# Copied from voxtrio/codecs/g711_stream.py at 44f85c6, class renamed only.
# ------------------------------------------------------------------------------------


class OldCodeFramer:
    """Cuts a G.711 stream into exact frames of ``frame_ms``, codes untouched.

    The grid is the :class:`~voxtrio.codecs.audio.Reframer`'s: frame ``k`` of a
    segment covers samples ``[floor(k*S), floor((k+1)*S))``; a segment starts at
    construction and after every :meth:`flush`. What does not fill a frame waits for
    the next push; :meth:`flush` emits it short (never padded). ``pts`` count samples
    and continue across segments (:attr:`next_pts` may be moved forward by the owner,
    e.g. to skip audio it discarded).

    Not thread-safe; one owner at a time.
    """

    __slots__ = ("_den", "_enc", "_fmt", "_k", "_num", "_pending", "_rate", "_seg_pts", "next_pts")

    def __init__(self, fmt: AudioFormat, frame_ms: FrameMs = 20) -> None:
        if not isinstance(fmt, AudioFormat) or fmt.is_pcm:
            raise ValueError(f"CodeFramer frames G.711 (mulaw, alaw) audio, got {fmt!r}")
        size = frame_fraction(fmt.sample_rate, frame_ms)
        self._fmt = fmt
        self._enc = fmt.encoding
        self._rate = fmt.sample_rate
        self._num, self._den = size.numerator, size.denominator
        self._pending = b""
        self.next_pts = 0
        self._seg_pts = 0
        self._k = 0

    @property
    def format(self) -> AudioFormat:
        """The format of the frames (and of the codes pushed)."""
        return self._fmt

    @property
    def pending_samples(self) -> int:
        """Samples held back, waiting for the rest of their frame."""
        return len(self._pending)

    def push(self, pcm: np.ndarray | bytes) -> list[AudioFrame]:
        """Add codes (bytes, or a uint8 array ``(n,)``/``(n, 1)``); returns the
        frames they complete, in order."""
        if isinstance(pcm, np.ndarray):
            if pcm.dtype != np.uint8:
                raise ValueError(f"{self._enc} codes are uint8, got {pcm.dtype}")
            data = np.ascontiguousarray(pcm).tobytes()
        else:
            data = bytes(pcm)
        buf = self._pending + data if self._pending else data
        frames: list[AudioFrame] = []
        offset = 0
        num, den, k = self._num, self._den, self._k
        emitted = self.next_pts - self._seg_pts  # floor(k*S) samples of this segment
        while True:
            need = (k + 1) * num // den - emitted
            if len(buf) - offset < need:
                break
            frames.append(self._frame(buf[offset : offset + need], self.next_pts, 0))
            offset += need
            emitted += need
            self.next_pts += need
            k += 1
        self._k = k
        self._pending = buf[offset:]
        return frames

    def flush(self) -> list[AudioFrame]:
        """Emit what is held as one short frame (none if nothing is) and start a
        new segment where it ended."""
        frames = []
        if self._pending:
            frames.append(self._frame(self._pending, self.next_pts, 0))
            self.next_pts += len(self._pending)
        self.discard()
        return frames

    def discard(self) -> None:
        """Forget what is held and start a new segment at :attr:`next_pts`."""
        self._pending = b""
        self._seg_pts = self.next_pts
        self._k = 0

    def restart_at(self, pts: int) -> None:
        """Start a new segment at ``pts`` (not before :attr:`next_pts`), dropping
        what is held."""
        self.next_pts = max(self.next_pts, pts)
        self.discard()

    def _frame(self, codes: bytes, pts: int, padded: int) -> AudioFrame:
        arr = np.frombuffer(codes, dtype=np.uint8).reshape(-1, 1)  # read-only view
        return build_frame(arr, self._rate, pts, padded, self._enc)


# ------------------------------------------------------------------------------------
# end of the previous implementation
# ------------------------------------------------------------------------------------

RATES = [8000, 11025, 16000, 22050]
FRAME_MS: list[FrameMs] = [1, 10, 20, 30, Fraction(125, 8), Fraction(7, 3)]


def key(frame: AudioFrame) -> tuple[int, int, bytes, int, str, int, Any, tuple[int, ...]]:
    return (
        frame.pts,
        frame.samples,
        frame.to_bytes(),
        frame.padded,
        frame.encoding,
        frame.sample_rate,
        frame.pcm.dtype,
        frame.pcm.shape,
    )


def as_input(data: bytes, kind: int) -> Any:
    """One chunk in one of the input forms the old framer took."""
    if kind == 0:
        return data
    if kind == 1:
        return bytearray(data)
    if kind == 2:
        return memoryview(data)
    arr = np.frombuffer(data, dtype=np.uint8).copy()
    return arr if kind == 3 else arr.reshape(-1, 1)


# A step: ("push", bytes, input kind) | ("flush",) | ("discard",) | ("skip", forward by)
#         | ("restart", forward by)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.binary(max_size=900), st.integers(0, 4)),
        st.tuples(st.just("flush")),
        st.tuples(st.just("discard")),
        st.tuples(st.just("skip"), st.integers(0, 500)),
        st.tuples(st.just("restart"), st.integers(-50, 500)),
    ),
    max_size=25,
)


@settings(max_examples=400, deadline=None)
@given(
    steps=steps,
    rate=st.sampled_from(RATES),
    frame_ms=st.sampled_from(FRAME_MS),
    law=st.sampled_from(["mulaw", "alaw"]),
)
def test_unified_framer_emits_exactly_the_old_code_framers_frames(
    steps: list[tuple[Any, ...]], rate: int, frame_ms: FrameMs, law: str
) -> None:
    fmt = AudioFormat(rate, encoding=law)  # type: ignore[arg-type]
    old = OldCodeFramer(fmt, frame_ms)
    new = CodeFramer(fmt, frame_ms)
    bare = Reframer(fmt, frame_ms)  # the unified framer itself, as CodeFramer uses it
    for step in steps:
        op = step[0]
        if op == "push":
            data, kind = step[1], step[2]
            want = old.push(as_input(data, kind))
            got = new.push(as_input(data, kind))
            got_bare = bare.push(as_input(data, kind))
        elif op == "flush":
            want, got, got_bare = old.flush(), new.flush(), bare.flush(pad=False)
        elif op == "discard":
            old.discard()
            new.discard()
            bare.discard()
            want = got = got_bare = []
        elif op == "skip":  # the owner moves next_pts forward over audio it discarded
            target = old.next_pts + step[1]
            old.next_pts = target
            old.discard()
            new.next_pts = target
            new.discard()
            bare.restart_at(target)
            want = got = got_bare = []
        else:  # restart_at, possibly at a pts already passed (then it stays put)
            target = max(0, old.next_pts + step[1])
            old.restart_at(target)
            new.restart_at(target)
            bare.restart_at(target)
            want = got = got_bare = []
        assert [key(f) for f in got] == [key(f) for f in want]
        assert [key(f) for f in got_bare] == [key(f) for f in want]
        assert got == want  # AudioFrame equality too
        for f in got:
            assert not f.pcm.flags.writeable
        for framer in (new, bare):
            assert (framer.next_pts, framer.pending_samples) == (
                old.next_pts,
                old.pending_samples,
            )
    assert new.flush() == old.flush() == bare.flush(pad=False)


@settings(max_examples=100, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=600),
    rate=st.sampled_from(RATES),
    frame_ms=st.sampled_from(FRAME_MS),
    law=st.sampled_from(["mulaw", "alaw"]),
)
def test_padded_g711_flush_fills_with_the_code_of_zero(
    data: bytes, rate: int, frame_ms: FrameMs, law: str
) -> None:
    """Only the bare Reframer pads (CodeFramer never does): the padding is the
    encoding's silence code, counted in ``padded``; the codes before it untouched."""
    fmt = AudioFormat(rate, encoding=law)  # type: ignore[arg-type]
    framer = Reframer(fmt, frame_ms)
    frames = framer.push(data)
    held = framer.pending_samples
    frames += framer.flush()
    size = frame_fraction(rate, frame_ms)
    assert b"".join(f.to_bytes() for f in frames)[: len(data)] == data
    if held:
        last = frames[-1]
        assert last.padded == last.samples - held > 0
        assert last.samples == (len(frames)) * size // 1 - (len(frames) - 1) * size // 1
        assert set(last.to_bytes()[held:]) == {silence_code(law)}
        assert last.encoding == law
    else:
        assert all(f.padded == 0 for f in frames)
    assert framer.next_pts == sum(f.samples for f in frames)


def test_g711_reframer_refuses_pcm_and_frames_equal_public_constructor() -> None:
    mu = AudioFormat(8000, encoding="mulaw")
    framer = Reframer(mu, 20)
    with pytest.raises(ValueError, match="uint8"):
        framer.push(np.zeros((160, 1), np.int16))
    with pytest.raises(ValueError, match="uint8"):
        framer.push(np.zeros(160, np.int16))
    assert (framer.pending_samples, framer.next_pts) == (0, 0)
    codes: np.ndarray = (np.arange(400) % 256).astype(np.uint8).reshape(-1, 1)
    frames = framer.push(codes) + framer.flush(pad=False)
    built = [AudioFrame.from_pcm(codes[0:160], mu, 0), AudioFrame.from_pcm(codes[160:320], mu, 160)]
    built.append(AudioFrame.from_pcm(codes[320:], mu, 320))
    assert frames == built
    assert frames[0] == build_frame(codes[0:160], 8000, 0, 0, "mulaw")
    # PCM frames are unchanged by the encoding: still pcm16
    (pcm_frame,) = Reframer(AudioFormat(8000), 20).push(np.zeros((160, 1), np.int16))
    assert pcm_frame.encoding == "pcm16"


def test_code_framer_next_pts_only_moves_forward() -> None:
    framer = CodeFramer(AudioFormat(8000, encoding="alaw"))
    framer.push(b"\x01" * 200)
    assert (framer.next_pts, framer.pending_samples) == (160, 40)
    framer.next_pts = 1000  # skip: what was held is dropped, a new segment starts there
    assert (framer.next_pts, framer.pending_samples) == (1000, 0)
    (frame,) = framer.push(b"\x02" * 160)
    assert (frame.pts, frame.to_bytes()) == (1000, b"\x02" * 160)
    with pytest.raises(ValueError, match="forward"):
        framer.next_pts = 5
    assert framer.next_pts == 1160
