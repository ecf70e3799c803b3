"""Codec throughput: 48 kHz stereo int16 in 20 ms chunks -> 24 kHz mono 20 ms frames.

All paths run on the same input (a 1 kHz sine plus noise, slightly different in each
channel), in the same process, interleaved round-robin; each path's best of several
runs is reported (machine noise only ever slows a run down).

Paths:

- ``reframer``: :class:`Reframer` alone, cutting the 48 kHz stereo input into 20 ms
  :class:`AudioFrame` objects (no conversion; output checked equal to the input).
- ``converter``: :class:`voxtrio.codecs.convert.Converter` -- downmix, one float32
  :class:`StreamResampler` stream, int16 rounding and :class:`Reframer` in one object,
  flushed at the end. This is the codec path the convert actor runs.
- ``public objects``: the same conversion composed by hand from the public pieces
  ``downmix`` (int16) -> ``StreamResampler.push`` (int16) -> ``Reframer.push``, flushed.
  The int16 downmix rounds once more than the float path, which costs a little SNR.
- ``floor``: the issue's bare-work floor, the same definition ``bench_peers`` uses
  (:func:`run_floor`): one float32 ``soxr.ResampleStream`` on input downmixed
  beforehand (the downmix is not timed; the same int16-unit float32 the converter
  feeds soxr), no int16 and no framing, flushed: nothing can be faster than the
  resampler itself. The codec-path target is measured against this row.
- ``bare loop``: the converter's own work with no objects -- the same numeric kernels
  inline: the float32 downmix in int16 units (one dot product, weights 0.5/0.5), one
  ``soxr.ResampleStream`` in float32 on ``(samples, 1)``, rint/clip/cast to int16 (no
  rescale), plain numpy slicing into 480-sample arrays, flushed at the end. Converter
  vs this row is the cost of the objects alone (why it reads ~0.9 where the floor
  reads ~0.4: the downmix, int16 rounding and framing cost as much as the resampler).
- ``per-chunk FFT``: ``scipy.signal.resample`` on each 20 ms chunk (the approach we
  replace): clicks at every chunk boundary.
- ``soxr int16, no flush``: an int16 ``soxr.ResampleStream`` that is never flushed,
  sliced into frames (what other frameworks do): its tail is lost.

Columns: frames/s (24 kHz 20 ms output frames per second of this process's CPU time,
``results.clock``; for ``reframer``, 48 kHz input frames), the ratios to the floor and
to the bare loop, the SNR against the one-shot ``soxr.resample`` of the whole (float64,
downmixed) signal over the samples the path produced, and the samples lost at the end
compared with that one-shot output.

A second table runs the floor and the converter on the same signal in blocks of 20,
100 and 1000 ms (the 20 ms row is the first table's measurement), with a verdict
against the 0.9x target per block size: the per-chunk Python and numpy call overhead
that keeps the 20 ms ratio low is spread over more samples in larger blocks. Its rows
carry no ``frames_per_s`` key, so ``--plot`` draws only the first table.

``python -m benchmarks.bench_codecs [--quick]``, or ``python -m benchmarks codecs``.
"""

from __future__ import annotations

import gc
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soxr

from benchmarks.results import Table, clock
from voxtrio.codecs import AudioFormat, Reframer, StreamResampler, downmix
from voxtrio.codecs.convert import Converter

IN_RATE = 48_000
OUT_RATE = 24_000
CHUNK = IN_RATE // 50  # 20 ms of input
FRAME = OUT_RATE // 50  # 20 ms of output
TARGET_RATIO = 0.90
#: The input block sizes of the second table (ms of 48 kHz input per push).
BLOCK_MS = (20, 100, 1000)
#: The floor's row name, the same in bench_codecs and bench_peers.
FLOOR_NAME = "floor: soxr float32 stream alone, pre-downmixed"

Int16 = npt.NDArray[np.int16]
Float = npt.NDArray[np.floating]


def make_input(seconds: float, seed: int = 0) -> Int16:
    """``(samples, 2)`` int16 at 48 kHz: a 1 kHz sine plus a little noise per channel."""
    n = int(seconds * IN_RATE)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / IN_RATE
    tone = np.sin(2 * np.pi * 1000.0 * t)
    left = 0.5 * tone + 0.01 * rng.standard_normal(n)
    right = 0.4 * tone + 0.01 * rng.standard_normal(n)
    st = np.stack([left, right], axis=1) * 32767.0
    return np.clip(np.rint(st), -32768, 32767).astype(np.int16)


def reference(stereo: Int16) -> Float:
    """The one-shot conversion of the whole signal, in float64 (no int16 rounding)."""
    mono = stereo.astype(np.float64).mean(axis=1) / 32768.0
    return np.asarray(soxr.resample(mono, IN_RATE, OUT_RATE, quality="VHQ"), dtype=np.float64)


def snr_db(out: Int16, ref: Float) -> float:
    """SNR of ``out`` (int16 mono) against ``ref`` over their common length."""
    n = min(len(out), len(ref))
    if n == 0:
        return float("nan")
    got = out[:n].astype(np.float64) / 32768.0
    want = ref[:n]
    noise = float(np.sum((got - want) ** 2))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(float(np.sum(want**2)) / noise)


# ---------------------------------------------------------------- the paths
# Each takes the list of 20 ms stereo chunks and returns a list of mono int16 arrays
# (the output frames' PCM), doing whatever per-frame work that path really does.

# The converter's kernels (voxtrio.codecs.convert): the float stream runs in int16
# units, so the downmix is one exact dot product by 0.5/0.5 into (samples, 1) and the
# way back is rint, clip and a cast with no rescale.
_W = np.array([[0.5], [0.5]], dtype=np.float32)
_HI = np.float32(32767.0)
_LO = np.float32(-32768.0)


def run_reframer(chunks: Sequence[Int16]) -> list[Int16]:
    framer = Reframer(AudioFormat(IN_RATE, 2), 20)
    frames = []
    for c in chunks:
        frames.extend(framer.push(c))
    frames.extend(framer.flush(pad=False))
    return [f.pcm for f in frames]


def run_converter(chunks: Sequence[Int16]) -> list[Int16]:
    conv = Converter(AudioFormat(IN_RATE, 2), AudioFormat(OUT_RATE, 1), 20)
    frames = []
    for c in chunks:
        frames.extend(conv.push(c))
    frames.extend(conv.flush())
    return [f.pcm for f in frames]


def run_public_objects(chunks: Sequence[Int16]) -> list[Int16]:
    resampler = StreamResampler(IN_RATE, OUT_RATE, 1)
    framer = Reframer(AudioFormat(OUT_RATE, 1), 20)
    frames = []
    for c in chunks:
        frames.extend(framer.push(resampler.push(downmix(c))))
    frames.extend(framer.push(resampler.flush()))
    frames.extend(framer.flush(pad=False))
    return [f.pcm for f in frames]


def _to_int16(y: npt.NDArray[np.float32]) -> Int16:
    """float32 in int16 units -> int16, rounding ``y`` (a fresh array) in place."""
    np.rint(y, out=y)
    np.minimum(y, _HI, out=y)
    np.maximum(y, _LO, out=y)
    return y.astype(np.int16)


def run_bare_loop(chunks: Sequence[Int16]) -> list[Int16]:
    stream = soxr.ResampleStream(IN_RATE, OUT_RATE, 1, dtype="float32", quality="VHQ")
    out: list[Int16] = []
    pending: Int16 = np.zeros((0, 1), dtype=np.int16)
    for c in chunks:
        y = stream.resample_chunk(c.dot(_W))
        if not y.shape[0]:  # soxr emits in blocks: often nothing for a 20 ms chunk
            continue
        x = _to_int16(y)
        if pending.shape[0]:
            x = np.concatenate((pending, x))
        i, n = 0, x.shape[0]
        while i + FRAME <= n:
            out.append(x[i : i + FRAME])
            i += FRAME
        pending = x[i:]
    tail = _to_int16(stream.resample_chunk(np.zeros((0, 1), dtype=np.float32), last=True))
    x = np.concatenate((pending, tail))
    for i in range(0, x.shape[0], FRAME):
        out.append(x[i : i + FRAME])
    return out


def downmixed(chunks: Sequence[Int16]) -> list[npt.NDArray[np.float32]]:
    """The floor's input: each chunk downmixed beforehand to what the converter feeds
    soxr (float32 ``(samples, 1)`` in int16 units)."""
    return [np.ascontiguousarray(c.dot(_W), dtype=np.float32) for c in chunks]


def run_floor(mono: Sequence[npt.NDArray[np.float32]]) -> int:
    """The floor: a float32 soxr stream alone on pre-downmixed chunks, flushed;
    returns the output samples (the frames are ``ceil(samples / FRAME)``)."""
    stream = soxr.ResampleStream(IN_RATE, OUT_RATE, 1, dtype="float32", quality="VHQ")
    n = 0
    for c in mono:
        n += int(stream.resample_chunk(c).shape[0])
    n += int(stream.resample_chunk(np.zeros((0, 1), dtype=np.float32), last=True).shape[0])
    return n


def run_fft_per_chunk(chunks: Sequence[Int16]) -> list[Int16]:
    from scipy.signal import resample

    return [_to_int16(resample(c.dot(_W), FRAME).astype(np.float32)) for c in chunks]


def run_soxr_int16_unflushed(chunks: Sequence[Int16]) -> list[Int16]:
    stream = soxr.ResampleStream(IN_RATE, OUT_RATE, 1, dtype="int16", quality="VHQ")
    out: list[Int16] = []
    pending: Int16 = np.zeros(0, dtype=np.int16)
    for c in chunks:
        x = stream.resample_chunk(downmix(c)[:, 0])
        if pending.shape[0]:
            x = np.concatenate((pending, x))
        i, n = 0, x.shape[0]
        while i + FRAME <= n:
            out.append(x[i : i + FRAME])
            i += FRAME
        pending = x[i:]
    return out  # never flushed: the resampler's tail and `pending` are lost


@dataclass
class Path:
    name: str
    run: Callable[[Sequence[Int16]], list[Int16]]
    best: float = math.inf
    frames: int = 0
    snr: float = math.nan
    lost: int = 0
    note: str = ""


@dataclass
class Block:
    """The second table's floor and converter runs at one input block size."""

    ms: int
    chunks: list[Int16]
    mono: list[npt.NDArray[np.float32]]
    floor_best: float = math.inf
    floor_samples: int = 0
    best: float = math.inf
    frames: int = 0
    snr: float = math.nan
    lost: int = 0
    same: bool = False  # the converter's output equals its 20 ms-chunk output


def blocks_of(stereo: Int16, ms: int) -> list[Int16]:
    size = IN_RATE * ms // 1000
    return [stereo[i : i + size] for i in range(0, stereo.shape[0], size)]


def _have_scipy() -> bool:
    try:
        import scipy.signal  # noqa: F401
    except ImportError:
        return False
    return True


def main(quick: bool = False) -> list[Table]:
    seconds = 5.0 if quick else 60.0
    repeats = 3 if quick else 15
    stereo = make_input(seconds)
    chunks = [stereo[i : i + CHUNK] for i in range(0, stereo.shape[0], CHUNK)]
    ref = reference(stereo)

    paths = [
        Path("reframer (48k stereo, no conversion)", run_reframer),
        Path("converter (codec path)", run_converter),
        Path("public objects: downmix+StreamResampler+Reframer", run_public_objects),
        Path("bare loop (converter's work, no objects)", run_bare_loop),
        Path("per-chunk FFT (scipy.signal.resample)", run_fft_per_chunk),
        Path("soxr int16 stream, never flushed", run_soxr_int16_unflushed),
    ]
    if not _have_scipy():
        paths = [p for p in paths if p.run is not run_fft_per_chunk]
        print("scipy is not installed (pip install -e '.[bench]'): per-chunk FFT skipped")

    mono_chunks = downmixed(chunks)
    floor_best, floor_samples = math.inf, 0
    # The larger blocks of the second table (its 20 ms row is this table's run).
    blocks = [Block(ms, c, downmixed(c)) for ms in BLOCK_MS if ms != 20
              for c in [blocks_of(stereo, ms)]]  # fmt: skip
    conv20: Int16 = np.zeros((0, 1), dtype=np.int16)
    for _ in range(repeats):
        gc.collect()
        t0 = clock()
        floor_samples = run_floor(mono_chunks)
        floor_best = min(floor_best, clock() - t0)
        for p in paths:
            gc.collect()
            t0 = clock()
            out = p.run(chunks)
            elapsed = clock() - t0
            p.best = min(p.best, elapsed)
            p.frames = len(out)
            pcm = np.concatenate(out) if out else np.zeros((0, 1), dtype=np.int16)
            if p.run is run_reframer:
                p.lost = stereo.shape[0] - pcm.shape[0]
                p.note = "output == input" if np.array_equal(pcm, stereo) else "OUTPUT != INPUT"
                p.snr = math.inf if p.note == "output == input" else math.nan
            else:
                mono = pcm.reshape(-1)
                p.lost = len(ref) - len(mono)
                p.snr = snr_db(mono, ref)
                if p.run is run_converter:
                    conv20 = pcm
        for b in blocks:
            gc.collect()
            t0 = clock()
            b.floor_samples = run_floor(b.mono)
            b.floor_best = min(b.floor_best, clock() - t0)
            gc.collect()
            t0 = clock()
            out = run_converter(b.chunks)
            b.best = min(b.best, clock() - t0)
            b.frames = len(out)
            pcm = np.concatenate(out) if out else np.zeros((0, 1), dtype=np.int16)
            b.lost = len(ref) - pcm.shape[0]
            b.snr = snr_db(pcm.reshape(-1), ref)
            b.same = np.array_equal(pcm, conv20)

    bare = next(p for p in paths if p.run is run_bare_loop)
    bare_fps = bare.frames / bare.best
    floor_fps = math.ceil(floor_samples / FRAME) / floor_best
    print(
        f"input: {seconds:g} s of 48 kHz stereo int16 in 20 ms chunks -> 24 kHz mono "
        f"20 ms frames; best of {repeats} runs"
    )
    header = (f"{'path':52s} {'frames/s':>10s} {'x floor':>7s} {'x bare':>7s} {'SNR dB':>8s} "
              f"{'lost':>6s}")
    print(header)
    print("-" * len(header))
    table = Table(
        "codecs: 48 kHz stereo int16, 20 ms chunks -> 24 kHz mono 20 ms frames",
        meta={"input_s": seconds, "repeats": repeats, "chunk_ms": 20},
    )
    floor_name = FLOOR_NAME
    print(f"{floor_name:52s} {floor_fps:10,.0f} {1.0:7.2f} {floor_fps / bare_fps:7.2f} "
          f"{'':>8s} {len(ref) - floor_samples:6d}")
    table.add(path=floor_name, frames_per_s=floor_fps, ratio_to_floor=1.0,
              ratio_to_bare=floor_fps / bare_fps, snr_db=None,
              samples_lost=len(ref) - floor_samples, note="", floor=True)
    for p in paths:
        fps = p.frames / p.best
        snr = "exact" if p.snr == math.inf else f"{p.snr:.1f}"
        print(f"{p.name:52s} {fps:10,.0f} {fps / floor_fps:7.2f} {fps / bare_fps:7.2f} "
              f"{snr:>8s} {p.lost:6d} {p.note}")
        table.add(path=p.name, frames_per_s=fps, ratio_to_floor=fps / floor_fps,
                  ratio_to_bare=fps / bare_fps, snr_db=p.snr, samples_lost=p.lost, note=p.note,
                  floor=False)
    conv = next(p for p in paths if p.run is run_converter)
    conv_fps = conv.frames / conv.best
    ratio = conv_fps / floor_fps
    met = ratio >= TARGET_RATIO and conv.lost == 0
    verdict = "MET" if met else "NOT MET"
    if quick:
        verdict += " in this quick run (too short to judge; run without --quick)"
    print(
        f"target (converter >= {TARGET_RATIO:.0%} of the floor, 0 samples lost): {verdict} "
        f"({ratio:.1%} of the floor, lost {conv.lost}, SNR {conv.snr:.1f} dB); "
        f"the objects' own cost: converter = {conv_fps / bare_fps:.1%} of the bare loop"
    )
    table.meta.update(converter_vs_floor=ratio, converter_vs_bare=conv_fps / bare_fps,
                      target_met=met)
    sizes = block_table(quick, repeats, seconds, (20, floor_fps, conv_fps, conv.snr, conv.lost),
                        blocks)  # fmt: skip
    for row in sizes.rows:
        table.meta[f"converter_vs_floor_{row['block_ms']}ms"] = row["converter_vs_floor"]
        table.meta[f"target_met_{row['block_ms']}ms"] = row["target_met"]
    return [table, sizes]


def block_table(
    quick: bool,
    repeats: int,
    seconds: float,
    first: tuple[int, float, float, float, int],
    blocks: Sequence[Block],
) -> Table:
    """Print and return the floor-vs-converter table by input block size; ``first`` is
    the 20 ms row from the main table (ms, floor fps, converter fps, SNR, lost)."""
    rows = [first] + [
        (b.ms, math.ceil(b.floor_samples / FRAME) / b.floor_best, b.frames / b.best, b.snr, b.lost)
        for b in blocks
    ]
    same = {b.ms: b.same for b in blocks}
    print()
    print(
        f"floor vs converter by input block size: the same {seconds:g} s input pushed in "
        f"20, 100 and 1000 ms blocks; best of {repeats} interleaved runs"
    )
    header = (f"{'block':>6s} {'floor frames/s':>15s} {'converter frames/s':>19s} "
              f"{'x floor':>7s} {'SNR dB':>7s} {'lost':>5s}  verdict (>= {TARGET_RATIO:.0%}, "
              "0 lost)")  # fmt: skip
    print(header)
    print("-" * len(header))
    table = Table(
        "codecs by block size: floor vs converter, 48 kHz stereo int16 -> 24 kHz mono 20 ms",
        meta={"input_s": seconds, "repeats": repeats, "target_ratio": TARGET_RATIO},
    )
    for ms, floor_fps, conv_fps, snr, lost in rows:
        ratio = conv_fps / floor_fps
        met = ratio >= TARGET_RATIO and lost == 0
        verdict = "MET" if met else "NOT MET"
        if quick:
            verdict += " (quick run: too short to judge)"
        note = "" if ms == 20 else (
            "output == 20 ms output" if same[ms] else "OUTPUT != 20 ms OUTPUT")  # fmt: skip
        print(f"{ms:4d} ms {floor_fps:15,.0f} {conv_fps:19,.0f} {ratio:7.2f} {snr:7.1f} "
              f"{lost:5d}  {verdict}{'; ' + note if note else ''}")  # fmt: skip
        table.add(block_ms=ms, floor_fps=floor_fps, converter_fps=conv_fps,
                  converter_vs_floor=ratio, target_met=met, snr_db=snr, samples_lost=lost,
                  note=note)  # fmt: skip
    return table


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__)
        sys.exit(0)
    main(quick="--quick" in sys.argv[1:])
