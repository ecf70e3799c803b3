"""``voxtrio run``: a WAV file through a full session, with live output and a summary.

Part of :mod:`voxtrio.cli`. Only voxtrio's public API is used here, so the
command exercises what an app would.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import attrs
import click
import trio

import voxtrio
from voxtrio.testing import ConnectionScript, open_gemini_loopback, open_openai_loopback
from voxtrio.testing.gemini import GeminiScript, GeminiTurns

from .output import Output, Tally

EXIT_OK = 0
EXIT_FAILED = 1  # the session failed: provider unreachable, key rejected, capture failed
EXIT_USAGE = 2  # bad input or options
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
#: stdout's reader went away (``| head``): 128 + SIGPIPE, what a shell reports for a
#: tool the closed pipe ended (``yes | head``); the session was still closed cleanly.
EXIT_STDOUT_CLOSED = 141

LOOPBACK_KEY = "loopback-key"  # the in-process server's key; not a secret
LATENCY_SOURCE = (
    "TurnMetrics.speech_to_played_s (voxtrio.codecs.turns): the provider's end of user "
    "speech -> the reply's first frame handed to the output; p50/p95 from "
    "session.stats().turns"
)

E = TypeVar("E", bound=BaseException)


class CliError(Exception):
    """A one-line reason and an exit code; printed without a traceback."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@attrs.frozen
class RunOptions:
    """Everything ``voxtrio run`` was asked to do, checked."""

    input_wav: Path
    input_samples: int
    input_format: voxtrio.AudioFormat
    provider: str
    model: str | None  # None: the protocol's default (DEFAULT_MODELS)
    base_url: str | None
    api_key: str | None = attrs.field(repr=False)
    instructions: str | None
    out_dir: Path
    db: Path
    session_id: str
    realtime: bool
    as_json: bool
    linger_s: float
    max_attempts: int | None
    tty: bool

    @property
    def input_s(self) -> float:
        return self.input_samples / self.input_format.sample_rate


def check_input(path: Path) -> tuple[int, voxtrio.AudioFormat]:
    """The input's length in samples and its format; CliError if it is not usable."""
    if not path.exists():
        raise CliError(f"{str(path)!r}: no such file", EXIT_USAGE)
    if not path.is_file():
        raise CliError(f"{str(path)!r} is not a file", EXIT_USAGE)
    try:
        with path.open("rb") as f:
            head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
            raise CliError(f"{str(path)!r} is not a WAV file (no RIFF/WAVE header)", EXIT_USAGE)
        pcm, fmt = voxtrio.read_wav(path)
    except OSError as exc:
        raise CliError(f"cannot read {str(path)!r}: {exc.strerror or exc}", EXIT_USAGE) from None
    except ValueError as exc:  # not a WAV, not 16-bit PCM, unsupported rate, truncated
        raise CliError(str(exc), EXIT_USAGE) from None
    if not pcm.shape[0]:
        raise CliError(f"{str(path)!r} holds no audio", EXIT_USAGE)
    return int(pcm.shape[0]), fmt


def _reconnect(opts: RunOptions) -> voxtrio.ReconnectPolicy | None:
    if opts.max_attempts is None:
        return None
    return voxtrio.ReconnectPolicy(max_attempts=opts.max_attempts)


#: The providers ``--provider`` names; the ``*-loopback`` ones run in this process.
PROVIDERS = ("loopback", "openai", "gemini", "gemini-loopback")
#: The model each protocol uses when ``--model`` is not given.
DEFAULT_MODELS = {"openai": "gpt-realtime", "gemini": "gemini-live-2.5-flash-preview"}
#: Where each provider's key comes from (the loopbacks need none of the user's).
KEY_VARIABLES = {"openai": ("OPENAI_API_KEY",), "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY")}


def protocol_of(provider: str) -> str:
    """The wire protocol a ``--provider`` speaks: ``"openai"`` or ``"gemini"``."""
    return "gemini" if provider.startswith("gemini") else "openai"


def make_provider(opts: RunOptions, base_url: str | None = None) -> voxtrio.Provider:
    """The provider for ``opts``; CliError for a missing or malformed key or option."""
    protocol = protocol_of(opts.provider)
    key = LOOPBACK_KEY if opts.provider.endswith("loopback") else opts.api_key
    if not key:
        names = " or ".join(KEY_VARIABLES[protocol])
        raise CliError(f"--provider {opts.provider} needs {names} in the environment", EXIT_USAGE)
    url = base_url if base_url is not None else opts.base_url
    model = opts.model or DEFAULT_MODELS[protocol]
    try:
        if protocol == "gemini":
            return voxtrio.GeminiLive(
                model=model, api_key=key, base_url=url, reconnect=_reconnect(opts)
            )
        return voxtrio.OpenAIRealtime(
            model=model, api_key=key, base_url=url, reconnect=_reconnect(opts)
        )
    except ValueError as exc:  # messages never echo the key
        raise CliError(str(exc), EXIT_USAGE) from None


@contextlib.asynccontextmanager
async def _open_provider(opts: RunOptions) -> AsyncIterator[voxtrio.Provider]:
    """The provider to talk to: a loopback server in-process, or the real service.

    With ``--realtime`` either loopback sends its reply audio in real time (one
    chunk per chunk's length), as the real services do; ``--fast`` gets it at once.
    """
    if opts.provider == "loopback":
        script = ConnectionScript(pace_replies=opts.realtime)
        async with open_openai_loopback(default_script=script, api_key=LOOPBACK_KEY) as server:
            yield make_provider(opts, server.url)
    elif opts.provider == "gemini-loopback":
        gemini_script = GeminiScript(turns=GeminiTurns(pace_replies=opts.realtime))
        async with open_gemini_loopback(
            default_script=gemini_script, api_key=LOOPBACK_KEY
        ) as gemini:
            yield make_provider(opts, gemini.url)
    else:
        yield make_provider(opts)


class _ObservedWavSink(voxtrio.WavSink):
    """A WAV sink that reports each reply frame it is handed (for the tally)."""

    def __init__(self, path: Path, on_frame: Callable[[voxtrio.AudioFrame], None]) -> None:
        super().__init__(path)
        self._on_frame = on_frame

    async def write(self, frame: voxtrio.AudioFrame) -> None:
        self._on_frame(frame)
        await super().write(frame)


@attrs.define
class _Stopper:
    """Ctrl-C cancels ``scope``: the consumer first, so the session still closes."""

    scope: trio.CancelScope
    interrupted: bool = False


async def _watch_sigint(stopper: _Stopper) -> None:
    # Only the first Ctrl-C is caught: leaving the receiver restores Python's
    # handler, so a second one interrupts at once (main() turns it into exit 130).
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            stopper.interrupted = True
            stopper.scope.cancel()
            return


async def run_session(opts: RunOptions) -> int:
    """Run the session of ``opts`` to its end; the exit code."""
    out = Output(as_json=opts.as_json, tty=opts.tty, started=time.monotonic())
    with trio.CancelScope() as whole:
        stopper = _Stopper(whole)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_sigint, stopper)
            try:
                code = await _with_provider(opts, out, stopper)
            finally:
                nursery.cancel_scope.cancel()
        return EXIT_INTERRUPTED if stopper.interrupted else code
    out.clear_progress()
    return EXIT_INTERRUPTED  # Ctrl-C before the session was up


async def _with_provider(opts: RunOptions, out: Output, stopper: _Stopper) -> int:
    reply_wav = opts.out_dir / "reply.wav"
    reply_wav.unlink(missing_ok=True)  # a stale reply of an earlier run would mislead
    async with _open_provider(opts) as provider:
        store = voxtrio.SqliteTranscriptStore(opts.db)
        try:
            return await _session(opts, provider, store, reply_wav, out, stopper)
        finally:
            store.close()


async def _session(
    opts: RunOptions,
    provider: voxtrio.Provider,
    store: voxtrio.SqliteTranscriptStore,
    reply_wav: Path,
    out: Output,
    stopper: _Stopper,
) -> int:
    tally = Tally()
    out.start(opts, provider.name)
    async with contextlib.AsyncExitStack() as stack:
        try:
            session = await stack.enter_async_context(
                voxtrio.open_session(
                    provider,
                    instructions=opts.instructions,
                    capture=voxtrio.WavCapture(opts.input_wav, realtime=opts.realtime),
                    store=store,
                    session_id=opts.session_id,
                    sink=_ObservedWavSink(reply_wav, partial(_audio_out, tally, out)),
                    realtime_playback=opts.realtime,
                )
            )
        except ValueError as exc:  # refused at the call (e.g. a bad session id)
            raise CliError(str(exc), EXIT_USAGE) from None
        events = session.subscribe()
        with trio.CancelScope() as consume:
            stopper.scope = consume
            await _consume(session, events, opts, out, tally)
        stats = session.stats()
        await session.aclose()
    # The block has exited: the store has flushed what the session saw.
    code = _exit_code(tally, stopper.interrupted, out.stdout_closed)
    out.summary(_summary(opts, provider, stats, tally, reply_wav, code))
    if tally.failure is not None:
        click.echo(f"voxtrio: error: {' '.join(tally.failure.split())}", err=True)
    return code


def _audio_out(tally: Tally, out: Output, frame: voxtrio.AudioFrame) -> None:
    tally.audio_out(frame.samples, frame.format.sample_rate, out.elapsed())


def _exit_code(tally: Tally, interrupted: bool, stdout_closed: bool = False) -> int:
    if interrupted:
        return EXIT_INTERRUPTED
    if tally.failure is not None:
        return EXIT_FAILED
    return EXIT_STDOUT_CLOSED if stdout_closed else EXIT_OK


async def _consume(
    session: voxtrio.Session,
    events: voxtrio.Subscription,
    opts: RunOptions,
    out: Output,
    tally: Tally,
) -> None:
    """Print events until the conversation is over.

    Over means: the whole input was captured, no turn is open (speech, a reply
    awaited, a reply playing), and nothing arrived for ``linger_s``; or nothing
    arrived for a long while at all (a provider that never answers); or the session
    failed; or stdout's reader went away (``| head``: the caller hangs up, as for
    Ctrl-C). The loop wakes every 100 ms to redraw the progress line.
    """
    rate = opts.input_format.sample_rate
    give_up_s = max(10.0, 4 * opts.linger_s)
    input_done_at: float | None = None
    while not out.stdout_closed:
        with trio.move_on_after(0.1):
            try:
                event = await events.receive()
            except trio.EndOfChannel:
                return
            now = out.elapsed()
            tally.feed(event, now)
            out.event(event, now)
            if tally.fatal or out.stdout_closed:
                return
        now = out.elapsed()
        captured = session.stats().edges["capture"].samples
        out.progress(captured / rate, opts.input_s)
        if input_done_at is None and (captured >= opts.input_samples or tally.capture_failed):
            input_done_at = now
        if input_done_at is not None:
            quiet = now - max(tally.last_event_s, input_done_at)
            if (quiet >= opts.linger_s and not tally.busy) or quiet >= give_up_s:
                return


def _summary(
    opts: RunOptions,
    provider: voxtrio.Provider,
    stats: voxtrio.SessionStats,
    tally: Tally,
    reply_wav: Path,
    code: int,
) -> dict[str, Any]:
    frame_ms = int(provider.input_frame_ms)
    rate = opts.input_format.sample_rate
    return {
        "type": "summary",
        "session_id": opts.session_id,
        "provider": opts.provider,
        "input_audio_s": round(opts.input_s, 3),
        "input_rate_hz": opts.input_format.sample_rate,
        "input_channels": opts.input_format.channels,
        "captured_audio_s": round(stats.edges["capture"].samples / rate, 3),
        "frames_sent": stats.frames_sent,
        "frame_ms": frame_ms,
        "audio_sent_s": round(stats.frames_sent * frame_ms / 1000, 3),
        "reply_audio_s": round(tally.reply_s, 3),
        "reply_frames_out": stats.frames_out,
        "reply_wav": str(reply_wav) if reply_wav.exists() else None,
        "dropped_frames": stats.dropped_frames,
        "reconnects": tally.reconnects,
        "interruptions": tally.interruptions,
        "errors": tally.errors,
        "turn_latency_ms": [_ms(t.speech_to_played_s) for t in tally.turns],
        "turn_latency_p50_ms": _ms(stats.turns.speech_to_played_p50_s),
        "turn_latency_p95_ms": _ms(stats.turns.speech_to_played_p95_s),
        "turns": [
            {
                "response_id": t.response_id,
                "speech_to_first_audio_ms": _ms(t.speech_to_first_audio_s),
                "first_audio_to_played_ms": _ms(t.first_audio_to_played_s),
                "speech_to_played_ms": _ms(t.speech_to_played_s),
                "reply_played_ms": t.reply_played_ms,
                "interrupted": t.interrupted,
                "underruns": t.underruns,
            }
            for t in tally.turns
        ],
        "turn_latency_source": LATENCY_SOURCE,
        "db": str(opts.db),
        "interrupted": code == EXIT_INTERRUPTED,
        "exit_code": code,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _find(exc: BaseException, kind: type[E]) -> E | None:
    """``exc`` or the first ``kind`` inside (nested) exception groups."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None


def run_to_exit_code(opts: RunOptions) -> int:
    """``trio.run`` the session; a CliError raised inside a nursery leaves unwrapped."""
    if not opts.provider.endswith("loopback"):
        make_provider(opts)  # a missing or malformed key fails before anything runs
    try:
        return trio.run(run_session, opts)
    except BaseException as exc:
        error = _find(exc, CliError)
        if error is not None:
            raise error from None
        if _find(exc, KeyboardInterrupt) is not None:
            return EXIT_INTERRUPTED
        raise
