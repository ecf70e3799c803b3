"""The main job: a voice session end to end against the built-in loopback provider.

The bundled speech WAV (48 kHz stereo) is captured in real time, downmixed,
resampled and cut into 20 ms frames at 24 kHz mono, and streamed over a real
websocket on 127.0.0.1 to the loopback OpenAI Realtime server of
``voxtrio.testing``. Its energy VAD detects the speech; it answers with a canned
transcript and a short reply. Events are printed as they arrive, the reply audio is
written to a WAV and the transcript is stored in SQLite.

    python -m examples.demo [--out DIR (default ./out)] [--fast]
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from importlib import resources
from pathlib import Path

import trio

import voxtrio
from voxtrio.testing import ConnectionScript, open_openai_loopback


def describe(event: voxtrio.Event) -> str | None:
    """One line for an event worth printing; None for the chatty ones."""
    match event:
        case voxtrio.SessionConnected(provider=provider):
            return f"connected to {provider}"
        case voxtrio.SpeechStarted(pts=pts):
            return f"speech started (input sample {pts})"
        case voxtrio.SpeechStopped(pts=pts):
            return f"speech stopped (input sample {pts})"
        case voxtrio.InputTranscriptionCompleted(item_id=item_id, transcript=text):
            return f"user said [{item_id}]: {text!r}"
        case voxtrio.ReplyTextDone(text=text):
            return f"assistant said: {text!r}"
        case voxtrio.ReplyDone(status=status):
            return f"reply done ({status})"
        case voxtrio.ReplyPlayed(played_ms=played_ms):
            return f"reply played ({played_ms} ms of audio)"
        case voxtrio.ErrorEvent(message=message, code=code):
            return f"error [{code}]: {message}"
        case voxtrio.AudioDropped(edge=edge, frames=frames):
            return f"dropped {frames} frames on {edge}"
    return None


async def run_demo(out_dir: Path, *, realtime: bool = True) -> int:
    wav = resources.files("voxtrio.data") / "hello_48k_stereo.wav"
    script = ConnectionScript(transcripts=("hello, this is the voxtrio demo",))
    db = out_dir / "transcript.sqlite3"
    reply_wav = out_dir / "reply.wav"
    started = time.monotonic()
    with resources.as_file(wav) as wav_path, trio.fail_after(60):
        async with open_openai_loopback(default_script=script, api_key="demo-key") as server:
            provider = voxtrio.OpenAIRealtime(
                model="gpt-realtime", api_key="demo-key", base_url=server.url
            )
            store = voxtrio.SqliteTranscriptStore(db)
            async with voxtrio.open_session(
                provider,
                instructions="You are the voxtrio demo assistant.",
                capture=voxtrio.WavCapture(wav_path, realtime=realtime),
                store=store,
                session_id="demo-call",
                sink=voxtrio.WavSink(reply_wav),
                realtime_playback=realtime,
            ) as session:
                events = session.subscribe()
                async for event in events:
                    line = describe(event)
                    if line is not None:
                        print(f"{time.monotonic() - started:6.2f}s  {line}", flush=True)
                    if isinstance(event, voxtrio.ReplyPlayed):
                        break  # the reply has gone to reply.wav: hang up
                    if isinstance(event, voxtrio.ErrorEvent) and not event.recoverable:
                        break
                stats = session.stats()
                await session.aclose()
            items = await trio.to_thread.run_sync(store.items, "demo-call")
            store.close()
            audio = server.all_audio()
    print()
    print(f"frames captured: {stats.frames_in}, sent to the provider: {stats.frames_sent}")
    print(f"audio the server received: {len(audio)} samples at 24 kHz")
    print(f"reply audio written to {reply_wav}")
    print(f"transcript stored in {db}:")
    print(voxtrio.render_context_as_text(items) or "  (empty)")
    print(f"(run it again with the same --out: the call resumes from {db.name})")
    return 0 if items else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("out"), help="directory for reply.wav and the database"
    )
    parser.add_argument("--fast", action="store_true", help="do not pace capture in real time")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return trio.run(partial(run_demo, args.out, realtime=not args.fast))


if __name__ == "__main__":
    sys.exit(main())
