"""G.711 as a stream format: ``AudioFormat.encoding``, the code framer, the converter
for any pair of PCM and G.711 formats, and the OpenAI codec's ``audio/pcmu`` /
``audio/pcma`` -- sans-IO, with hypothesis."""

from __future__ import annotations

import base64
import itertools
import json
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import voxtrio.codecs.convert as convert_module
from voxtrio.audio import AudioFormat, AudioFrame, concat_frames, frame_fraction
from voxtrio.codecs.convert import Converter, convert_oneshot
from voxtrio.codecs.g711 import alaw_decode, alaw_encode, mulaw_decode, mulaw_encode
from voxtrio.codecs.g711_stream import (
    CodeFramer,
    StreamConverter,
    decode_codes,
    make_converter,
    silence_code,
)
from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec
from voxtrio.messages import EndOfInput, FrameBatch, ReplyAudio
from voxtrio.testing.openai.oracle import openai_oracle_available, validate_client_event

MULAW = AudioFormat(8000, encoding="mulaw")
ALAW = AudioFormat(8000, encoding="alaw")
LAWS = {"mulaw": MULAW, "alaw": ALAW}


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` split at ``points`` (any order, any repeats)."""
    bounds = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# ---------------------------------------------------------------- AudioFormat.encoding


def test_encoding_defaults_to_pcm16_and_old_calls_keep_working() -> None:
    fmt = AudioFormat(16000)
    assert fmt.encoding == "pcm16"
    assert fmt.is_pcm
    assert fmt == AudioFormat(16000, 1) == AudioFormat(16000, 1, 2)
    assert hash(fmt) == hash(AudioFormat(16000, 1, 2, encoding="pcm16"))
    assert AudioFormat(48000, 2).bytes_per_sample == 4
    assert AudioFrame(np.zeros((3, 1), np.int16), 8000).format == AudioFormat(8000)


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_g711_formats_are_one_byte_per_sample(law: str) -> None:
    fmt = AudioFormat(8000, encoding=law)  # type: ignore[arg-type]
    assert (fmt.sample_width, fmt.bytes_per_sample, fmt.bytes_in(160)) == (1, 1, 160)
    assert not fmt.is_pcm
    assert fmt != AudioFormat(8000)
    assert fmt == AudioFormat(8000, 1, 1, encoding=law)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"encoding": "opus"}, "encoding must be one of 'pcm16', 'mulaw', 'alaw'"),
        ({"encoding": None}, "encoding must be one of"),
        ({"encoding": "mulaw", "sample_width": 2}, "G.711 is one byte per sample"),
        ({"encoding": "alaw", "channels": 2}, "alaw audio is mono"),
        ({"sample_width": 1}, "sample_width 1 bytes is not supported"),
    ],
)
def test_bad_encodings_are_clear_value_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AudioFormat(8000, **kwargs)  # type: ignore[arg-type]


def test_g711_frames_hold_codes_and_say_so() -> None:
    frame = AudioFrame.from_pcm(b"\x00\x7f\xff", MULAW, pts=5)
    assert frame.pcm.dtype == np.uint8
    assert frame.pcm.shape == (3, 1)
    assert (frame.samples, frame.to_bytes(), frame.format, frame.pts) == (
        3,
        b"\x00\x7f\xff",
        MULAW,
        5,
    )
    assert frame.duration == Fraction(3, 8000)
    assert "mulaw" in repr(frame)
    with pytest.raises(ValueError, match="uint8"):
        AudioFrame(np.zeros((3, 1), np.int16), 8000, encoding="alaw")
    with pytest.raises(ValueError, match="one byte per sample"):
        AudioFrame.from_pcm(np.zeros(3, np.int16), MULAW)


# ---------------------------------------------------------------- the code framer


@settings(max_examples=200)
@given(
    data=st.binary(max_size=2000),
    points=st.lists(st.integers(0, 2000), max_size=12),
    frame_ms=st.sampled_from([10, 20, Fraction(125, 8), 30]),
    law=st.sampled_from(["mulaw", "alaw"]),
)
def test_code_framer_passes_every_byte_once_in_order_on_the_grid(
    data: bytes, points: list[int], frame_ms: int | Fraction, law: str
) -> None:
    """Conservation and chunk invariance: whatever the chunking, the frames hold the
    input bytes exactly once, in order; frame k is [floor(kS), floor((k+1)S)); pts
    are contiguous; nothing is padded; the last short frame comes out at flush."""
    fmt = LAWS[law]
    framer = CodeFramer(fmt, frame_ms)
    frames: list[AudioFrame] = []
    for piece in cut(data, points):
        frames += framer.push(piece)
    held = framer.pending_samples
    frames += framer.flush()
    assert b"".join(f.to_bytes() for f in frames) == data
    size = frame_fraction(8000, frame_ms)
    whole = [f for f in frames[: len(frames) - (1 if held else 0)]]
    for k, f in enumerate(whole):
        assert f.samples == (k + 1) * size // 1 - k * size // 1
    pts = 0
    for f in frames:
        assert (f.pts, f.padded, f.encoding, f.sample_rate) == (pts, 0, law, 8000)
        pts = f.end_pts
    assert framer.next_pts == len(data)
    assert framer.pending_samples == 0


def test_code_framer_refuses_pcm() -> None:
    with pytest.raises(ValueError, match=r"G\.711"):
        CodeFramer(AudioFormat(8000))
    with pytest.raises(ValueError, match="uint8"):
        CodeFramer(MULAW).push(np.zeros(4, np.int16))


# ---------------------------------------------------------------- conversion


@settings(max_examples=100)
@given(
    data=st.binary(max_size=3000),
    points=st.lists(st.integers(0, 3000), max_size=10),
    law=st.sampled_from(["mulaw", "alaw"]),
)
def test_same_g711_format_passes_through_untouched(
    data: bytes, points: list[int], law: str
) -> None:
    """Same G.711 format both sides: the codes come out byte for byte, and no
    resampler is ever made (one that is made raises)."""

    def no_resampler(*_a: object, **_k: object) -> None:
        raise AssertionError("a pass-through must not resample")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(convert_module, "StreamResampler", no_resampler)
        conv = make_converter(LAWS[law], LAWS[law], 20)
        assert isinstance(conv, StreamConverter)
        assert conv.passthrough
        frames: list[AudioFrame] = []
        for piece in cut(data, points):
            frames += conv.push(np.frombuffer(piece, np.uint8).reshape(-1, 1))
        frames += conv.flush()
    assert b"".join(f.to_bytes() for f in frames) == data
    assert {f.format for f in frames} <= {LAWS[law]}


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=4000),
    points=st.lists(st.integers(0, 4000), max_size=8),
    law=st.sampled_from(["mulaw", "alaw"]),
)
def test_g711_to_16k_pcm_is_the_one_shot_conversion_of_the_decoded_call(
    data: bytes, points: list[int], law: str
) -> None:
    """The Gemini input path: decoded, then exactly the one-shot 8k -> 16k
    conversion whatever the chunking; nothing lost at the segment end (the output
    length is the resampler's ``2 * n`` within one sample)."""
    target = AudioFormat(16000)
    conv = make_converter(LAWS[law], target, 20)
    frames: list[AudioFrame] = []
    for piece in cut(data, points):
        frames += conv.push(np.frombuffer(piece, np.uint8).reshape(-1, 1))
    frames += conv.flush()
    got = concat_frames(frames)
    want = convert_oneshot(decode_codes(data, law), AudioFormat(8000), target)
    np.testing.assert_array_equal(got, want)
    assert abs(got.shape[0] - 2 * len(data)) <= 1
    assert all(f.sample_rate == 16000 and f.encoding == "pcm16" for f in frames)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 6000),
    seed=st.integers(0, 2**32 - 1),
    law=st.sampled_from(["mulaw", "alaw"]),
)
def test_pcm_to_g711_is_the_pcm_conversion_encoded(n: int, seed: int, law: str) -> None:
    """24 kHz PCM to an 8 kHz G.711 target: the PCM conversion, each sample encoded."""
    pcm = np.random.default_rng(seed).integers(-20000, 20000, (n, 1)).astype(np.int16)
    conv = make_converter(AudioFormat(24000), LAWS[law], 20)
    frames = conv.push(pcm) + conv.flush()
    ref = Converter(AudioFormat(24000), AudioFormat(8000), 20)
    want = concat_frames(ref.push(pcm) + ref.flush())
    encode = mulaw_encode if law == "mulaw" else alaw_encode
    assert b"".join(f.to_bytes() for f in frames) == encode(want)
    assert all(f.encoding == law for f in frames)


def test_silence_codes_decode_to_zero_or_nearest() -> None:
    assert mulaw_decode(bytes([silence_code("mulaw")]))[0] == 0
    assert abs(int(alaw_decode(bytes([silence_code("alaw")]))[0])) == 8  # A-law has no 0
    with pytest.raises(ValueError, match=r"not a G\.711"):
        silence_code("pcm16")


# ---------------------------------------------------------------- the OpenAI codec


@pytest.mark.parametrize(("wire", "law"), [("audio/pcmu", "mulaw"), ("audio/pcma", "alaw")])
def test_openai_codec_declares_and_sends_g711_as_it_is(wire: str, law: str) -> None:
    codec = OpenAIRealtimeCodec(audio_format=wire)
    assert codec.input_format == codec.output_format == LAWS[law]
    (update,) = codec.connect_messages("hi")
    assert openai_oracle_available()
    assert validate_client_event(json.loads(update)) is None  # the openai package's types
    audio = json.loads(update)["session"]["audio"]
    assert audio["input"]["format"] == audio["output"]["format"] == {"type": wire}
    data = bytes(range(256)) * 3
    framer = CodeFramer(LAWS[law])
    batch = FrameBatch(tuple(framer.push(data) + framer.flush()))
    sent = b""
    for text in codec.encode(batch):
        assert validate_client_event(json.loads(text)) is None
        sent += base64.b64decode(json.loads(text)["audio"])
    assert sent == data
    # audio_ms counts 8 kHz samples now: 20 ms is sample 160
    assert codec.input_pts(20) == 160
    with pytest.raises(ValueError, match="8000 Hz mono"):
        codec.encode(AudioFrame(np.zeros((480, 1), np.int16), 24000))


@pytest.mark.parametrize(("wire", "law"), [("audio/pcmu", "mulaw"), ("audio/pcma", "alaw")])
def test_openai_reply_audio_in_g711_arrives_as_codes(wire: str, law: str) -> None:
    codec = OpenAIRealtimeCodec(audio_format=wire)
    data = bytes(range(255, -1, -1))
    delta = {
        "type": "response.output_audio.delta", "event_id": "e1", "response_id": "r1",
        "item_id": "i1", "output_index": 0, "content_index": 0,
        "delta": base64.b64encode(data).decode(),
    }  # fmt: skip
    (reply,) = codec.decode(json.dumps(delta))
    assert isinstance(reply, ReplyAudio)
    assert (reply.sample_rate, reply.encoding, reply.pcm.tobytes()) == (8000, law, data)


def test_openai_end_of_input_silence_is_g711_silence() -> None:
    codec = OpenAIRealtimeCodec(audio_format="audio/pcmu")
    framer = CodeFramer(MULAW)
    codec.encode(FrameBatch(tuple(framer.push(b"\x10" * 1600))))
    sent = b"".join(base64.b64decode(json.loads(t)["audio"]) for t in codec.encode(EndOfInput()))
    assert set(sent) == {0xFF}
    assert len(sent) == (500 + 200) * 8  # the VAD's silence and a margin, at 8 kHz


def test_default_openai_codec_is_unchanged() -> None:
    codec = OpenAIRealtimeCodec()
    assert codec.input_format == AudioFormat(24000)
    (update,) = codec.connect_messages("hi")
    fmt = json.loads(update)["session"]["audio"]["input"]["format"]
    assert fmt == {"type": "audio/pcm", "rate": 24000}
    with pytest.raises(ValueError, match="audio_format"):
        OpenAIRealtimeCodec(audio_format="audio/opus")


def test_gemini_codec_refuses_g711_frames() -> None:
    from voxtrio.codecs.gemini_live import GeminiLiveCodec, GeminiLiveConfig

    codec = GeminiLiveCodec(GeminiLiveConfig(model="gemini-live-test"))
    frame = AudioFrame(np.zeros((320, 1), np.uint8), 16000, encoding="mulaw")
    with pytest.raises(ValueError, match="mulaw: convert it first"):
        codec.encode(frame)


@settings(max_examples=100)
@given(
    replies=st.lists(
        st.tuples(st.binary(max_size=1200), st.lists(st.integers(0, 1200), max_size=6)),
        min_size=1,
        max_size=4,
    ),
    law=st.sampled_from(["mulaw", "alaw"]),
)
def test_playback_track_passes_g711_replies_through(
    replies: list[tuple[bytes, list[int]]], law: str
) -> None:
    """Reply audio in the output track's own G.711 format: every byte comes out
    once, in order, whatever the chunking, reply after reply; pts contiguous; never
    resampled (the resampler is never fed)."""
    from voxtrio.actors.playback_track import Track

    track = Track(24000, LAWS[law], 20)
    frames = track.set_in_rate(8000, law)
    assert track.passthrough
    for data, points in replies:
        for piece in cut(data, points):
            frames += track.push(np.frombuffer(piece, np.uint8).reshape(-1, 1))
        frames += track.drain()
    assert b"".join(f.to_bytes() for f in frames) == b"".join(d for d, _ in replies)
    pts = 0
    for f in frames:
        assert (f.pts, f.encoding, f.sample_rate) == (pts, law, 8000)
        pts = f.end_pts
    assert track.resampler.flush_float().size == 0


def test_playback_track_encodes_pcm_replies_for_a_g711_output() -> None:
    """A 24 kHz PCM reply on an 8 kHz mu-law track: resampled, then encoded."""
    from voxtrio.actors.playback_track import Track

    reply = (np.sin(np.arange(4800) * 2 * np.pi * 440 / 24000) * 8000).astype(np.int16)
    track = Track(24000, MULAW, 20)
    assert not track.passthrough
    frames = track.push(reply.reshape(-1, 1)) + track.drain()
    assert {f.encoding for f in frames} == {"mulaw"}
    ref = Converter(AudioFormat(24000), AudioFormat(8000), 20)
    want = concat_frames(ref.push(reply.reshape(-1, 1)) + ref.flush())
    assert b"".join(f.to_bytes() for f in frames) == mulaw_encode(want)
