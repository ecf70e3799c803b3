"""What one OpenAI connection remembers: event numbering, audio sent, speech state.

Shared by the encoder and the decoder of one codec (one connection).
"""

from __future__ import annotations

import bisect
from typing import Final

import attrs

from ...audio import AudioFrame
from .config import OPENAI_RATE

__all__ = ["MIN_COMMIT_SAMPLES", "ConnectionState"]

#: Below this much committed audio the service rejects a commit.
MIN_COMMIT_SAMPLES: Final = OPENAI_RATE // 10  # 100 ms


@attrs.define
class ConnectionState:
    """The mutable state of one connection.

    Audio bookkeeping: ``appended`` samples were sent on this connection, and the
    input pts jumped (audio dropped during an outage) at the appended offsets
    ``break_offsets``, to the pts ``break_pts``.
    """

    next_event: int = 0
    config_event_id: str | None = None
    configured: bool = False  # the service confirmed our session.update
    session_id: str | None = None
    appended: int = 0
    break_offsets: list[int] = attrs.Factory(list)
    break_pts: list[int] = attrs.Factory(list)
    next_pts: int | None = None
    uncommitted: int = 0  # samples appended since the last commit/clear/turn
    speaking: bool = False  # the service's VAD heard speech start, not yet stop
    rate: int = OPENAI_RATE  # of the input audio (8000 for G.711)
    out_rate: int = OPENAI_RATE  # of the reply audio
    out_encoding: str = "pcm16"  # of the reply audio: pcm16, mulaw or alaw

    @property
    def min_commit_samples(self) -> int:
        """Below this much committed audio (100 ms) the service rejects a commit."""
        return self.rate // 10

    def event_id(self) -> str:
        """A fresh client ``event_id``."""
        self.next_event += 1
        return f"vx_{self.next_event}"

    def note_audio(self, frame: AudioFrame) -> None:
        """Count ``frame`` (not empty) as appended."""
        if frame.pts != self.next_pts:
            self.break_offsets.append(self.appended)
            self.break_pts.append(frame.pts)
        self.appended += frame.samples
        self.uncommitted += frame.samples
        self.next_pts = frame.end_pts

    def note_run(self, starts: list[tuple[int, int]], samples: int, next_pts: int) -> None:
        """Count ``samples`` appended at once, as :meth:`note_audio` frame by frame
        would: ``starts`` holds (offset into them, pts) where the pts jumped."""
        for offset, pts in starts:
            self.break_offsets.append(self.appended + offset)
            self.break_pts.append(pts)
        self.appended += samples
        self.uncommitted += samples
        self.next_pts = next_pts

    def input_pts(self, audio_ms: int) -> int | None:
        """The input ``pts`` of the audio the service names by ``audio_ms`` (ms since
        the first audio appended on this connection), or None before any audio."""
        if not self.break_offsets:
            return None
        offset = audio_ms * (self.rate // 1000)
        i = max(0, bisect.bisect_right(self.break_offsets, offset) - 1)
        return self.break_pts[i] + offset - self.break_offsets[i]
