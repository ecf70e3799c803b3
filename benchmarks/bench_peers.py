"""Peers side by side: the same conversion by voxtrio and by other frameworks' pieces.

48 kHz stereo int16 in 20 ms capture chunks -> 24 kHz mono int16 in 20 ms frames, over
60 s of a 1 kHz sine plus noise (5 s with ``--quick``), the same input and chunking for
every row, interleaved in the same process, best of several runs. Rows:

- ``floor``: ``bench_codecs.run_floor``, the same row as there: one
  ``soxr.ResampleStream`` in float32 on input downmixed beforehand (the downmix is
  not timed), no framing, flushed: nothing can be faster than the resampler.
- ``voxtrio Converter``: ``voxtrio.codecs.convert.Converter`` (downmix, resample, int16,
  20 ms framing), flushed at the end of the segment.
- ``scipy per-chunk FFT``: ``scipy.signal.resample`` on each chunk, the approach voxtrio
  replaces (the same code as ``bench_codecs``).
- ``LiveKit``: ``livekit.rtc.AudioResampler`` (package ``livekit``) at its default
  quality and at ``VERY_HIGH``, fed ``rtc.AudioFrame`` chunks downmixed with numpy, its
  output cut into 20 ms frames by ``AudioByteStream`` (package ``livekit-agents``) when
  that is installed, else by a plain byte buffer; both flushed.
- ``Pipecat``: ``SOXRStreamAudioResampler`` (package ``pipecat-ai``), its ``resample``
  coroutine awaited in one ``trio.run`` per run (voxtrio's benchmarks run no asyncio;
  in Pipecat's source that coroutine awaits nothing, so the loop under it does not
  matter), chunks downmixed with numpy, output cut by a plain byte buffer; it has no
  flush, so its tail stays inside.

A peer whose package is missing gets a row saying why and no numbers. Columns:
frames/s (output 20 ms frames per second of this process's CPU time, ``results.clock``),
the ratio to voxtrio's Converter,
the SNR against the one-shot ``soxr.resample`` of the whole downmixed signal
(``bench_codecs.snr_db``) and the samples lost at the end of the segment.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import trio

from benchmarks.bench_codecs import (
    CHUNK,
    FLOOR_NAME,
    FRAME,
    IN_RATE,
    OUT_RATE,
    TARGET_RATIO,
    Int16,
    downmixed,
    make_input,
    reference,
    run_converter,
    run_fft_per_chunk,
    run_floor,
    snr_db,
)
from benchmarks.results import Table, clock

FRAME_BYTES = FRAME * 2

Run = Callable[[Sequence[Int16]], list[Int16]]


def _mono_int16(chunk: Int16) -> Int16:
    """The downmix a peer's user writes: mean of the channels, rounded to int16."""
    mono: Int16 = np.rint(chunk.mean(axis=1)).astype(np.int16)
    return mono


class ByteFramer:
    """Cuts a byte stream of mono int16 into 20 ms frames (what a peer lacks)."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def push(self, data: bytes | bytearray | memoryview, out: list[Int16]) -> None:
        self.buf += data
        whole = len(self.buf) - len(self.buf) % FRAME_BYTES
        for i in range(0, whole, FRAME_BYTES):
            out.append(np.frombuffer(self.buf[i : i + FRAME_BYTES], dtype=np.int16))
        del self.buf[:whole]

    def flush(self, out: list[Int16]) -> None:
        if self.buf:
            out.append(np.frombuffer(bytes(self.buf), dtype=np.int16))
            self.buf.clear()


# ------------------------------------------------------------------- LiveKit


def livekit_run(quality_name: str | None) -> tuple[Run | None, str]:
    """A LiveKit path at ``quality_name`` (None: the default), or None and the reason."""
    try:
        from livekit import rtc
    except ImportError as exc:
        return None, f"not installed: pip install livekit ({exc.name} missing)"
    byte_stream: Any = None
    with contextlib.suppress(ImportError):  # AudioByteStream is in livekit-agents
        byte_stream = importlib.import_module("livekit.agents.utils.audio").AudioByteStream
    quality = rtc.AudioResamplerQuality[quality_name] if quality_name else None

    def run(chunks: Sequence[Int16]) -> list[Int16]:
        kw = {} if quality is None else {"quality": quality}
        resampler = rtc.AudioResampler(IN_RATE, OUT_RATE, num_channels=1, **kw)
        out: list[Int16] = []
        framer = ByteFramer()
        stream = byte_stream(OUT_RATE, 1, samples_per_channel=FRAME) if byte_stream else None

        def take(frames: list[Any]) -> None:
            for f in frames:
                if stream is None:
                    framer.push(f.data.cast("B"), out)
                else:
                    out.extend(np.frombuffer(g.data, dtype=np.int16) for g in stream.push(f.data))

        for c in chunks:
            mono = _mono_int16(c)
            take(resampler.push(rtc.AudioFrame(mono.tobytes(), IN_RATE, 1, mono.shape[0])))
        take(resampler.flush())
        if stream is None:
            framer.flush(out)
        else:
            out.extend(np.frombuffer(g.data, dtype=np.int16) for g in stream.flush())
        return out

    note = "" if byte_stream else "livekit-agents not installed: byte buffer, not AudioByteStream"
    return run, note


# ------------------------------------------------------------------- Pipecat


def pipecat_run() -> tuple[Run | None, str]:
    try:
        from pipecat.audio.resamplers.soxr_stream_resampler import SOXRStreamAudioResampler
    except ImportError as exc:
        return None, f"not installed: pip install pipecat-ai ({exc.name} missing)"
    # Older releases bind the rates at construction; newer ones take them per call.
    per_call = "in_rate" in inspect.signature(SOXRStreamAudioResampler.resample).parameters

    def run(chunks: Sequence[Int16]) -> list[Int16]:
        # ``resample`` is ``async def`` but awaits nothing (it calls soxr and returns):
        # a trio loop drives it as well as Pipecat's asyncio one.
        async def go() -> list[Int16]:
            if per_call:
                resampler = SOXRStreamAudioResampler()
            else:
                resampler = SOXRStreamAudioResampler(IN_RATE, OUT_RATE)
            out: list[Int16] = []
            framer = ByteFramer()
            for c in chunks:
                data = _mono_int16(c).tobytes()
                if per_call:
                    got = await resampler.resample(data, IN_RATE, OUT_RATE)
                else:
                    got = await resampler.resample(data)
                framer.push(got, out)
            framer.flush(out)  # the resampler itself has no flush: its tail stays inside
            return out

        return trio.run(go)

    return run, "no flush in its API"


# ------------------------------------------------------------------- measurement


@dataclass
class Path:
    name: str
    run: Run | None
    note: str = ""
    best: float = math.inf
    frames: int = 0
    samples: int = 0
    snr: float = math.nan
    lost: int = 0


def main(quick: bool = False) -> Table:
    seconds = 5.0 if quick else 60.0
    repeats = 3 if quick else 9
    stereo = make_input(seconds)
    chunks = [stereo[i : i + CHUNK] for i in range(0, stereo.shape[0], CHUNK)]
    mono = downmixed(chunks)  # the floor's input (bench_codecs.run_floor: one definition)
    ref = reference(stereo)

    paths = [Path("voxtrio Converter", run_converter)]
    try:
        import scipy.signal  # noqa: F401

        paths.append(Path("scipy per-chunk FFT", run_fft_per_chunk))
    except ImportError:
        paths.append(Path("scipy per-chunk FFT", None, "not installed: pip install scipy"))
    paths.append(Path("LiveKit AudioResampler (default quality)", *livekit_run(None)))
    paths.append(Path("LiveKit AudioResampler (VERY_HIGH)", *livekit_run("VERY_HIGH")))
    paths.append(Path("Pipecat SOXRStreamAudioResampler", *pipecat_run()))

    floor_best, floor_samples = math.inf, 0
    for _ in range(repeats):
        gc.collect()
        t0 = clock()
        floor_samples = run_floor(mono)
        floor_best = min(floor_best, clock() - t0)
        for p in paths:
            if p.run is None:
                continue
            gc.collect()
            t0 = clock()
            out = p.run(chunks)
            p.best = min(p.best, clock() - t0)
            pcm = np.concatenate(out).reshape(-1) if out else np.zeros(0, dtype=np.int16)
            p.frames, p.samples = len(out), pcm.shape[0]
            p.lost = len(ref) - pcm.shape[0]
            p.snr = snr_db(pcm, ref)
    return _report(seconds, repeats, paths, floor_best, floor_samples, len(ref))


def _report(
    seconds: float,
    repeats: int,
    paths: list[Path],
    floor_best: float,
    floor_samples: int,
    ref_len: int,
) -> Table:
    table = Table(
        "peers: 48 kHz stereo int16, 20 ms chunks -> 24 kHz mono 20 ms frames",
        meta={"input_s": seconds, "repeats": repeats, "chunk_ms": 20},
    )
    vox = paths[0]
    vox_fps = vox.frames / vox.best
    floor_fps = math.ceil(floor_samples / FRAME) / floor_best
    print(
        f"input: {seconds:g} s of 48 kHz stereo int16 in 20 ms chunks -> 24 kHz mono 20 ms "
        f"frames; best of {repeats} runs, interleaved"
    )
    header = f"{'path':48s} {'frames/s':>10s} {'x voxtrio':>9s} {'SNR dB':>7s} {'lost':>6s}"
    print(header)
    print("-" * len(header))
    print(f"{FLOOR_NAME:48s} {floor_fps:10,.0f} "
          f"{floor_fps / vox_fps:9.2f} {'':>7s} {ref_len - floor_samples:6d}")
    table.add(path=FLOOR_NAME, frames_per_s=floor_fps,
              ratio_to_voxtrio=floor_fps / vox_fps, snr_db=None,
              samples_lost=ref_len - floor_samples, floor=True, installed=True, note="")
    for p in paths:
        if p.run is None:
            print(f"{p.name:48s} {p.note}")
            table.add(path=p.name, frames_per_s=None, ratio_to_voxtrio=None, snr_db=None,
                      samples_lost=None, floor=False, installed=False, note=p.note)
            continue
        fps = p.frames / p.best
        print(f"{p.name:48s} {fps:10,.0f} {fps / vox_fps:9.2f} {p.snr:7.1f} {p.lost:6d} {p.note}")
        table.add(path=p.name, frames_per_s=fps, ratio_to_voxtrio=fps / vox_fps, snr_db=p.snr,
                  samples_lost=p.lost, floor=False, installed=True, note=p.note)
    measured = [p for p in paths[1:] if p.run is not None]
    ahead = all(vox_fps > p.frames / p.best and vox.snr > p.snr for p in measured)
    met = ahead and vox.lost == 0
    table.meta.update(converter_vs_floor=vox_fps / floor_fps, target_met=met,
                      peers_measured=len(measured))
    floor_ok = vox_fps / floor_fps >= TARGET_RATIO
    table.meta["converter_floor_target_met"] = floor_ok
    print(
        f"voxtrio Converter = {vox_fps / floor_fps:.0%} of the floor (target >= "
        f"{TARGET_RATIO:.0%}: {'MET' if floor_ok else 'NOT MET'}). Target (ahead of every "
        f"peer row in frames/s, at a higher SNR, with 0 samples lost): "
        f"{'MET' if met else 'NOT MET'} against {len(measured)} measured peer row(s)"
    )
    return table


if __name__ == "__main__":
    main()
