"""What ``voxtrio run`` prints, and the tally of a run's events it summarises.

Plain lines when stdout is not a terminal; on a terminal, colour (``click.style``)
and a progress line for the capture position, redrawn in place.

A reader that goes away (``voxtrio run ... | head -3``) is not an error: the first
write that meets the closed pipe sets :attr:`Output.stdout_closed`, points stdout at
the null device (so nothing, not even the interpreter's last flush, fails on it
again) and drops every later line; the runner then hangs up as for Ctrl-C.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import attrs
import click
import numpy as np

import voxtrio

if TYPE_CHECKING:
    from .runner import RunOptions

__all__ = ["Output", "Tally", "describe", "event_record", "silence_stdout"]


def silence_stdout() -> None:
    """Point file descriptor 1 at the null device, once its reader has gone.

    Python's own advice for a closed pipe (see the ``signal`` module's note on
    SIGPIPE): output still buffered, and the flush at exit, then go nowhere instead
    of raising BrokenPipeError again.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file: nothing to redirect
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


@attrs.define
class Tally:
    """Counts and timings of one run, fed every event as it arrives.

    Turn latency is not measured here: the runtime's :class:`voxtrio.TurnMetrics`
    events (one per reply played out or cut, from ``voxtrio.codecs.turns``) are kept
    as they arrive, and the summary reads its percentiles from
    ``session.stats().turns``. ``awaiting_reply`` only tells :attr:`busy` that a reply
    is still to come after the user stopped speaking.
    """

    last_event_s: float = 0.0
    speech_active: bool = False
    open_replies: int = 0
    reply_s: float = 0.0
    reconnects: int = 0
    interruptions: int = 0
    errors: int = 0
    turns: list[voxtrio.TurnMetrics] = attrs.Factory(list)
    awaiting_reply: bool = False
    fatal: voxtrio.ErrorEvent | None = None
    capture_failed: voxtrio.ErrorEvent | None = None

    @property
    def busy(self) -> bool:
        """A turn is open: speech, a reply awaited after it, or a reply playing."""
        return self.speech_active or self.open_replies > 0 or self.awaiting_reply

    @property
    def failure(self) -> str | None:
        """Why the run failed, if it did."""
        bad = self.fatal or self.capture_failed
        return bad.message if bad is not None else None

    def feed(self, event: voxtrio.Event, now: float) -> None:
        self.last_event_s = now
        match event:
            case voxtrio.SpeechStarted():
                self.speech_active = True
            case voxtrio.SpeechStopped():
                self.speech_active = False
                self.awaiting_reply = True
            case voxtrio.ReplyStarted():
                self.open_replies += 1
            case voxtrio.ReplyPlayed():
                self.open_replies = max(0, self.open_replies - 1)
            case voxtrio.ReplyTextDelta() | voxtrio.ReplyTextDone():
                self.awaiting_reply = False
            case voxtrio.TurnMetrics():
                self.turns.append(event)
            case voxtrio.ReplyInterrupted():
                self.interruptions += 1
            case voxtrio.SessionReconnected():
                self.reconnects += 1
            case voxtrio.ErrorEvent(recoverable=recoverable, code=code):
                self.errors += 1
                if not recoverable:
                    self.fatal = event
                elif code == "capture_failed":
                    self.capture_failed = event

    def audio_out(self, samples: int, rate_hz: int, now: float) -> None:
        """Reply audio reached the output (reply audio is not an event subscribers get)."""
        self.reply_s += samples / rate_hz
        self.awaiting_reply = False


def describe(event: voxtrio.Event) -> tuple[str, str | None] | None:
    """A line (and its colour) for an event worth a line; None for the chatty ones."""
    match event:
        case voxtrio.SessionConnected(provider=provider):
            return f"connected to {provider}", "green"
        case voxtrio.SessionReconnecting(attempt=attempt, delay_s=delay, reason=reason):
            return f"reconnecting (attempt {attempt} in {delay:.2f} s): {reason}", "yellow"
        case voxtrio.SessionReconnected(attempt=attempt, resumed=resumed):
            how = "resumed" if resumed else "new connection"
            return f"reconnected after {attempt} attempt(s) ({how})", "green"
        case voxtrio.SpeechStarted(pts=pts):
            return f"speech started{_at(pts)}", "cyan"
        case voxtrio.SpeechStopped(pts=pts):
            return f"speech stopped{_at(pts)}", "cyan"
        case voxtrio.InputTranscriptionCompleted(transcript=text):
            return f"user said: {text!r}", "blue"
        case voxtrio.InputTranscriptionFailed(message=message):
            return f"transcription failed: {message}", "yellow"
        case voxtrio.ReplyTextDone(text=text):
            return f"assistant said: {text!r}", "magenta"
        case voxtrio.ReplyDone(status=status):
            return f"reply done ({status})", None
        case voxtrio.ReplyInterrupted():
            return "reply interrupted (the user spoke)", "yellow"
        case voxtrio.ReplyPlayed(played_ms=played_ms):
            return f"reply played ({played_ms} ms of audio)", None
        case voxtrio.ToolCall(name=name):
            return f"tool call {name}", None
        case voxtrio.AudioDropped(edge=edge, frames=frames):
            return f"dropped {frames} frames on {edge}", "yellow"
        case voxtrio.SubscriberLagged(missed=missed):
            return f"missed {missed} events (output too slow)", "yellow"
        case voxtrio.ErrorEvent(message=message, code=code, recoverable=recoverable):
            return f"error [{code}]: {message}", "yellow" if recoverable else "red"
    return None


def _at(pts: int | None) -> str:
    return "" if pts is None else f" (input sample {pts})"


def event_record(event: voxtrio.Event, t_s: float) -> dict[str, Any]:
    """The event as a JSON-able dict: its type, the time, its fields; audio as a count."""
    record: dict[str, Any] = {"type": type(event).__name__, "t_s": round(t_s, 3)}
    for field in attrs.fields(type(event)):
        value = getattr(event, field.name)
        if isinstance(value, np.ndarray):
            record["samples"] = int(value.shape[0])  # never the audio itself
        else:
            record[field.name] = value
    return record


class Output:
    """Writes a run's lines to stdout: events, a progress line, the summary."""

    def __init__(self, *, as_json: bool, tty: bool, started: float) -> None:
        self._json = as_json
        self._tty = tty and not as_json
        self._started = started
        self._progress_shown = False
        #: stdout's reader went away (a closed pipe); nothing more is written.
        self.stdout_closed = False

    def _echo(self, text: str, nl: bool = True) -> None:
        if self.stdout_closed:
            return
        try:
            click.echo(text, nl=nl)
        except BrokenPipeError:
            self.stdout_closed = True
            silence_stdout()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _style(self, text: str, fg: str | None, bold: bool = False) -> str:
        return click.style(text, fg=fg, bold=bold) if self._tty and (fg or bold) else text

    def _line(self, text: str) -> None:
        self.clear_progress()
        self._echo(text)

    def clear_progress(self) -> None:
        if self._progress_shown:
            self._echo("\r\x1b[K", nl=False)
            self._progress_shown = False

    def start(self, opts: RunOptions, provider_name: str) -> None:
        fmt = opts.input_format
        if self._json:
            self._echo(
                json.dumps(
                    {
                        "type": "start",
                        "session_id": opts.session_id,
                        "provider": opts.provider,
                        "input": str(opts.input_wav),
                        "input_audio_s": round(opts.input_s, 3),
                        "realtime": opts.realtime,
                        "db": str(opts.db),
                    }
                )
            )
            return
        pace = "real time" if opts.realtime else "as fast as possible"
        where = "the built-in loopback server" if opts.provider == "loopback" else provider_name
        self._line(
            f"{opts.input_wav}: {opts.input_s:.2f} s, {fmt.sample_rate} Hz, {fmt.channels} ch; "
            f"streaming {pace} to {where}, session {opts.session_id}"
        )

    def event(self, event: voxtrio.Event, t_s: float) -> None:
        if self._json:
            self._echo(json.dumps(event_record(event, t_s)))
            return
        described = describe(event)
        if described is not None:
            text, fg = described
            self._line(f"{t_s:6.2f}s  {self._style(text, fg)}")

    def progress(self, captured_s: float, total_s: float) -> None:
        if not self._tty:
            return
        width = 30
        done = min(width, round(width * captured_s / total_s)) if total_s else width
        bar = "#" * done + "-" * (width - done)
        self._echo(f"\r\x1b[K  capture [{bar}] {captured_s:5.2f} / {total_s:.2f} s", nl=False)
        self._progress_shown = True

    def summary(self, s: dict[str, Any]) -> None:
        self.clear_progress()
        if self._json:
            self._echo(json.dumps(s))
            return
        latencies = s["turn_latency_ms"]
        turns = (
            ", ".join(
                f"turn {i}: " + ("no speech before it" if ms is None else f"{ms:.0f} ms")
                for i, ms in enumerate(latencies, 1)
            )
            or "no turns"
        )
        p50, p95 = s["turn_latency_p50_ms"], s["turn_latency_p95_ms"]
        if p50 is not None and p95 is not None:
            turns += f"  (p50 {p50:.0f} ms, p95 {p95:.0f} ms)"
        reply_to = f" -> {s['reply_wav']}" if s["reply_wav"] else ""
        lines = [
            self._style("summary", None, bold=True),
            f"  input audio   {s['input_audio_s']:.2f} s "
            f"({s['input_rate_hz']} Hz, {s['input_channels']} ch); "
            f"captured {s['captured_audio_s']:.2f} s",
            f"  sent          {s['frames_sent']} frames x {s['frame_ms']} ms = "
            f"{s['audio_sent_s']:.2f} s of audio, to the provider link",
            f"  reply audio   {s['reply_audio_s']:.2f} s{reply_to}",
            f"  drops         {s['dropped_frames']} frames;  reconnects {s['reconnects']};  "
            f"interruptions {s['interruptions']};  errors {s['errors']}",
            f"  turn latency  {turns}",
            "                (TurnMetrics: end of user speech -> first reply audio handed"
            " to the output)",
            f"  transcript    {s['db']} (voxtrio transcript --db {s['db']} "
            f"--session-id {s['session_id']})",
        ]
        if s["interrupted"]:
            lines.append(self._style("  interrupted: the session was closed early", "yellow"))
        self._echo("\n".join(lines))
