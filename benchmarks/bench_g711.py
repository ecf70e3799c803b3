"""G.711 throughput: the table-lookup codecs against a plain Python loop, same run.

Input: 8 kHz mono int16, a 440 Hz tone plus noise at telephone levels (60 s; 5 s with
``quick``). Paths, for each law, encode and decode:

- ``whole``: one call over the whole signal (``voxtrio.codecs.mulaw_encode`` etc.);
- ``20 ms``: one call per 160-sample frame, as a media stream delivers it, so the
  per-call overhead (validation, ``tobytes``) shows;
- ``python loop``: the same quantiser written per sample in plain Python (no tables,
  no numpy), over the first 2 s of the signal (its output is checked equal to the
  vectorised one, so both compute the same thing).

Every path's best of several interleaved runs is reported as samples per second, with
the ratio to the Python loop. Run: ``python -m benchmarks.bench_g711`` (or
``python -m benchmarks g711``; add ``--quick`` for a smoke run).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.results import Table
from voxtrio.codecs import alaw_decode, alaw_encode, mulaw_decode, mulaw_encode

RATE = 8_000
FRAME = RATE // 50  # 20 ms
LOOP_SECONDS = 2

Int16 = npt.NDArray[np.int16]


def make_input(seconds: float, seed: int = 0) -> Int16:
    n = int(seconds * RATE)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    x = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.02 * rng.standard_normal(n)
    return np.clip(np.rint(x * 32767), -32768, 32767).astype(np.int16)


# --- the plain-Python reference: one sample at a time ------------------------------


def _py_mulaw(x: int) -> int:
    x14 = x >> 2
    mask = 0x7F if x14 < 0 else 0xFF
    biased = min(abs(x14) + 33, 0x1FFF)
    seg = biased.bit_length() - 6
    return ((seg << 4) | ((biased >> (seg + 1)) & 0x0F)) ^ mask


def _py_alaw(x: int) -> int:
    x13 = x >> 3
    mask = 0x55 if x13 < 0 else 0xD5
    mag = -x13 - 1 if x13 < 0 else x13
    seg = max(mag.bit_length() - 5, 0)
    return ((seg << 4) | ((mag >> max(seg, 1)) & 0x0F)) ^ mask


def _py_mulaw_level(code: int) -> int:
    word = ~code & 0xFF
    level = (((word & 0x0F) << 3) + 0x84) << ((word >> 4) & 0x07)
    return 0x84 - level if word & 0x80 else level - 0x84


def _py_alaw_level(code: int) -> int:
    word = code ^ 0x55
    seg = (word >> 4) & 0x07
    level = ((word & 0x0F) << 4) + (8 if seg == 0 else 0x108)
    level <<= max(seg - 1, 0)
    return level if word & 0x80 else -level


def py_encoder(quantise: Callable[[int], int]) -> Callable[[Int16], bytes]:
    def encode(pcm: Int16) -> bytes:
        return bytes([quantise(x) for x in pcm.tolist()])

    return encode


def py_decoder(level: Callable[[int], int]) -> Callable[[bytes], Int16]:
    def decode(data: bytes) -> Int16:
        return np.array([level(c) for c in data], dtype=np.int16)

    return decode


# --- timing ------------------------------------------------------------------------


def time_once(fn: Callable[[Any], object], arg: Any) -> float:
    gc.collect()
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start


def in_frames(fn: Callable[[Any], object]) -> Callable[[Any], object]:
    """``fn`` applied to each 20 ms piece of its argument in turn."""

    def run(data: Any) -> object:
        return [fn(data[i : i + FRAME]) for i in range(0, len(data), FRAME)]

    return run


def main(quick: bool = False) -> Table:
    seconds = 5 if quick else 60
    runs = 3 if quick else 9
    pcm = make_input(seconds)
    head = pcm[: LOOP_SECONDS * RATE]
    laws = [
        ("mu-law", mulaw_encode, mulaw_decode, _py_mulaw, _py_mulaw_level),
        ("A-law", alaw_encode, alaw_decode, _py_alaw, _py_alaw_level),
    ]
    print(f"8 kHz mono int16, {seconds} s ({len(pcm):,} samples); python loop on the first "
          f"{LOOP_SECONDS} s; best of {runs}")
    print(f"{'law':<7} {'op':<7} {'path':<12} {'samples/s':>14} {'x loop':>9}")
    table = Table("g711: table lookup vs a plain Python loop, 8 kHz mono",
                  meta={"input_s": seconds, "repeats": runs})
    for name, encode, decode, quantise, level in laws:
        codes = encode(pcm)
        py_enc, py_dec = py_encoder(quantise), py_decoder(level)
        # Same arithmetic, or the ratio means nothing.
        assert py_enc(head) == codes[: len(head)]
        assert np.array_equal(py_dec(codes[: len(head)]), decode(codes[: len(head)]))
        for op, fast, slow, data, sliced in (
            ("encode", encode, py_enc, pcm, head),
            ("decode", decode, py_dec, codes, codes[: len(head)]),
        ):
            paths = {
                "whole": (fast, data),
                "20 ms": (in_frames(fast), data),
                "python loop": (slow, sliced),
            }
            best = dict.fromkeys(paths, float("inf"))
            for _ in range(runs):  # interleave the paths, keep each one's best
                for path, (fn, arg) in paths.items():
                    best[path] = min(best[path], time_once(fn, arg))
            rates = {path: len(paths[path][1]) / best[path] for path in paths}
            for path, rate in rates.items():
                ratio = rate / rates["python loop"]
                print(f"{name:<7} {op:<7} {path:<12} {rate:>14,.0f} {ratio:>8.1f}x")
                table.add(law=name, op=op, path=path, samples_per_s=rate, ratio_to_loop=ratio)
    return table


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
