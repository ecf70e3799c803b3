"""Common slips fail at the call site with a message that says what to do."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import trio

import voxtrio
from voxtrio import AudioFormat, SessionClosedError
from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec, OpenAIRealtimeConfig
from voxtrio.codecs.openai_realtime.config import VOICES
from voxtrio.codecs.wav import write_wav
from voxtrio.codecs.wire import Verdict
from voxtrio.testing import RecordingProvider


def test_a_missing_input_file_raises_at_open_session(tmp_path: Path) -> None:
    capture = voxtrio.WavCapture(tmp_path / "missing.wav")
    with pytest.raises(FileNotFoundError, match=r"WavCapture: no such file: .*missing\.wav"):
        trio.run(_open, capture)


def test_an_unsupported_input_file_raises_at_open_session(tmp_path: Path) -> None:
    path = tmp_path / "eight_bit.wav"
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(16_000)
        w.writeframes(bytes(160))
    with pytest.raises(ValueError, match=r"has 8-bit samples; supported: 16-bit integer PCM WAV"):
        trio.run(_open, voxtrio.WavCapture(path))
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav at all")
    with pytest.raises(ValueError, match=r"is not a WAV file voxtrio can read"):
        trio.run(_open, voxtrio.WavCapture(junk))


def test_a_readable_file_opens(tmp_path: Path) -> None:
    path = tmp_path / "ok.wav"
    write_wav(path, np.zeros((160, 1), np.int16), AudioFormat(16_000))
    voxtrio.WavCapture(path).check()  # no exception


async def _open(capture: object) -> None:
    with trio.fail_after(10):
        async with voxtrio.open_session(RecordingProvider(), capture=capture):  # type: ignore[arg-type]
            pass


def test_a_file_name_where_a_capture_goes_says_what_to_pass() -> None:
    with pytest.raises(TypeError, match=r"capture must be a capture object such as "
                       r"voxtrio\.WavCapture\('input\.wav'\).*got str 'x\.wav'"):  # fmt: skip
        trio.run(_open, "x.wav")


def test_a_file_name_where_a_sink_goes_says_what_to_pass() -> None:
    async def main() -> None:
        async with voxtrio.open_session(RecordingProvider(), sink="out.wav"):  # type: ignore[arg-type]
            pass

    with pytest.raises(TypeError, match=r"sink must be voxtrio\.WavSink\('output\.wav'\)"):
        trio.run(main)


def test_running_under_asyncio_says_so() -> None:
    async def main() -> None:
        async with voxtrio.open_session(RecordingProvider()):
            pass

    message = r"^voxtrio runs under trio, not asyncio: start your app with trio\.run\(main\)"
    with pytest.raises(RuntimeError, match=message):
        asyncio.run(main())


async def test_subscribe_after_the_session_closed() -> None:
    with trio.fail_after(10):
        async with voxtrio.open_session(RecordingProvider()) as session:
            pass
        with pytest.raises(SessionClosedError, match=r"cannot subscribe: the session has ended"):
            session.subscribe()


async def test_send_audio_takes_the_format_given_once() -> None:
    with trio.fail_after(10):
        provider = RecordingProvider()
        fmt = AudioFormat(16_000)
        async with voxtrio.open_session(provider, input_format=fmt) as session:
            await session.send_audio(np.zeros((320, 1), np.int16))
            await session.end_input()
            await provider.input_ended.wait()
        # 20 ms at 16 kHz, converted to the provider's rate: 20 ms there.
        expected = 20 * provider.input_format.sample_rate // 1000
        assert sum(f.samples for f in provider.frames) == expected
        async with voxtrio.open_session(RecordingProvider()) as session:
            with pytest.raises(TypeError, match=r"send_audio\(\) needs the audio's format"):
                await session.send_audio(np.zeros((320, 1), np.int16))


def test_an_unknown_openai_voice_is_refused_at_construction() -> None:
    assert VOICES == ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer",
                      "verse", "marin", "cedar")  # fmt: skip
    with pytest.raises(ValueError, match=r"voice must be one of alloy, .*cedar or None"):
        voxtrio.OpenAIRealtime(model="gpt-realtime", voice="Kore")
    for voice in VOICES:
        OpenAIRealtimeConfig(voice=voice)


def test_a_normal_close_is_retried_as_the_readme_says() -> None:
    codec = OpenAIRealtimeCodec()
    assert codec.classify_close(1000, "") is Verdict.RETRY
    assert codec.classify_close(1008, "policy") is Verdict.FATAL
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "a normal close (1000) by\nthe server included" in readme


def test_the_first_connect_does_not_say_reconnected() -> None:
    from voxtrio.codecs.transcript import UserItem, instructions_with_context

    assert instructions_with_context("Base.", ()) == "Base."
    text = instructions_with_context("Base.", [UserItem("u1", "hello", seq=0)])
    assert "re-established" not in text
    assert "began before this connection" in text


async def test_reply_audio_is_playback_only() -> None:
    """As ``Session.subscribe`` documents: the audio goes to the output, the reply's
    end reaches subscribers."""
    from voxtrio.messages import ReplyAudio, ReplyDone

    with trio.fail_after(10):
        provider = RecordingProvider()
        async with voxtrio.open_session(provider, realtime_playback=False) as session:
            sub = session.subscribe()
            await provider.connected.wait()
            await provider.emit(ReplyAudio(np.full((480, 1), 100, np.int16), 24_000, "r1", "i1"))
            await provider.emit(ReplyDone("r1"))
            frame = await session.output.receive()
            seen = []
            async for event in sub:
                seen.append(event)
                if isinstance(event, ReplyDone):
                    break
            await session.aclose()
        assert frame.samples > 0
        assert not any(isinstance(e, ReplyAudio) for e in seen)
        assert "playback-only" in (voxtrio.Session.subscribe.__doc__ or "")
