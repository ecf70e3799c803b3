"""The media-stream codec (Twilio Media Streams JSON shape): pure, no socket."""

from __future__ import annotations

import itertools
import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from voxtrio.codecs import mulaw_decode, mulaw_encode
from voxtrio.codecs.media_stream import (
    Clear,
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    MediaStreamServerCodec,
    OutboundMedia,
    Start,
    Stop,
    StreamProtocolError,
    build_clear,
    build_connected,
    build_dtmf,
    build_inbound_mark,
    build_inbound_media,
    build_mark,
    build_media,
    build_start,
    build_stop,
    parse_inbound,
    parse_outbound,
)

sids = st.text(min_size=1, max_size=40)
params = st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4)
starts = st.builds(
    Start, stream_sid=sids, call_sid=sids, custom_parameters=params,
    account_sid=st.none() | st.text(max_size=10),
)


def started(sid: str = "MZ1", call: str = "CA1") -> MediaStreamServerCodec:
    codec = MediaStreamServerCodec()
    assert codec.receive(build_connected()) == [Connected()]
    assert codec.receive(build_start(Start(sid, call))) == [Start(sid, call)]
    return codec


@given(starts)
def test_start_round_trips(start: Start) -> None:
    assert parse_inbound(build_start(start)) == start


@given(sids, st.binary(max_size=400), st.integers(0, 2**40), st.integers(0, 2**40))
def test_inbound_media_round_trips(sid: str, payload: bytes, chunk: int, ts: int) -> None:
    media = Media(sid, payload, chunk, ts)
    assert parse_inbound(build_inbound_media(media)) == media


@given(sids, st.text(max_size=30), st.sampled_from("0123456789*#"))
def test_mark_dtmf_stop_round_trip(sid: str, name: str, digit: str) -> None:
    assert parse_inbound(build_inbound_mark(Mark(sid, name))) == Mark(sid, name)
    assert parse_inbound(build_dtmf(Dtmf(sid, digit))) == Dtmf(sid, digit)
    assert parse_inbound(build_stop(Stop(sid, "CA9"))) == Stop(sid, "CA9")


@given(sids, st.binary(max_size=400), st.text(max_size=30))
def test_outbound_round_trips(sid: str, payload: bytes, name: str) -> None:
    assert parse_outbound(build_media(sid, payload)) == OutboundMedia(sid, payload)
    assert parse_outbound(build_mark(sid, name)) == Mark(sid, name)
    assert parse_outbound(build_clear(sid)) == Clear(sid)


@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=12))
def test_any_chunking_of_the_payload_arrives_whole_and_in_order(
    audio: bytes, cuts: list[int]
) -> None:
    codec = started()
    bounds = sorted({0, len(audio), *(c for c in cuts if c <= len(audio))})
    received = b""
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        msg = build_inbound_media(Media("MZ1", audio[a:b], i + 1, a // 8), i + 2)
        (event,) = codec.receive(msg)
        assert isinstance(event, Media)
        assert event.chunk == i + 1
        received += event.payload
    assert received == audio


@given(st.lists(st.integers(-32768, 32767), max_size=300))
def test_mulaw_payload_survives_the_wire(samples: list[int]) -> None:
    """PCM -> mu-law -> outbound media -> parse -> decode is the G.711 round trip."""
    pcm = np.array(samples, dtype=np.int16)
    wire = build_media("MZ1", mulaw_encode(pcm))
    event = parse_outbound(wire)
    assert isinstance(event, OutboundMedia)
    expected = mulaw_decode(mulaw_encode(pcm))
    assert np.array_equal(mulaw_decode(event.payload), expected)


@given(st.text(max_size=200) | st.binary(max_size=50))
def test_garbage_never_raises(data: str | bytes) -> None:
    codec = MediaStreamServerCodec()
    out = codec.receive(data)
    assert all(isinstance(e, StreamProtocolError | Connected) for e in out)
    back = parse_outbound(data)
    assert back is None or isinstance(back, StreamProtocolError | OutboundMedia | Mark | Clear)


@given(
    st.dictionaries(
        st.sampled_from(["event", "streamSid", "media", "start", "mark", "stop", "dtmf"]),
        st.none() | st.integers() | st.text(max_size=5) | st.lists(st.integers(), max_size=2)
        | st.dictionaries(st.sampled_from(["payload", "chunk", "name", "callSid"]),
                          st.none() | st.integers() | st.text(max_size=5), max_size=3),
        max_size=5,
    )
)
def test_wrongly_typed_fields_are_errors_not_exceptions(ev: dict[str, object]) -> None:
    out = parse_inbound(json.dumps(ev))
    assert out is None or isinstance(
        out, StreamProtocolError | Connected | Start | Media | Mark | Dtmf | Stop
    )


def test_malformed_messages_are_typed_errors() -> None:
    for bad in ("not json", "[1]", b"\x00", '{"event":"media","streamSid":"MZ1"}',
                '{"event":"media","streamSid":"MZ1","media":{"payload":"@@"}}',
                '{"event":"start","start":{"streamSid":"MZ"}}', '{"event":3}'):
        event = parse_inbound(bad)
        assert isinstance(event, StreamProtocolError), bad
        assert not event.fatal
    assert parse_inbound('{"event":"someday"}') is None


def test_unsupported_format_is_fatal_with_a_clear_reason() -> None:
    codec = MediaStreamServerCodec()
    for fmt in (MediaFormat("audio/x-l16"), MediaFormat(sample_rate=16000),
                MediaFormat("audio/x-alaw", channels=2)):
        (err,) = codec.receive(build_start(Start("MZ1", "CA1", media_format=fmt)))
        assert isinstance(err, StreamProtocolError)
        assert err.fatal
        assert err.code == "unsupported_media_format"
        assert "audio/x-mulaw" in err.reason
    assert codec.start is None


def test_alaw_streams_are_taken() -> None:
    codec = MediaStreamServerCodec()
    fmt = MediaFormat("audio/x-alaw")
    (start,) = codec.receive(build_start(Start("MZ1", "CA1", media_format=fmt)))
    assert isinstance(start, Start)
    assert start.media_format.g711 == "alaw"
    assert codec.start == start
    assert MediaFormat().g711 == "mulaw"


def test_order_rules() -> None:
    codec = MediaStreamServerCodec()
    (err,) = codec.receive(build_inbound_media(Media("MZ1", b"\xff", 1, 0)))
    assert isinstance(err, StreamProtocolError)
    assert err.fatal
    assert err.code == "before_start"
    codec = started()
    (dup,) = codec.receive(build_start(Start("MZ1", "CA1")))
    assert isinstance(dup, StreamProtocolError)
    assert dup.code == "duplicate_start"
    (other,) = codec.receive(build_inbound_media(Media("MZ2", b"\xff", 1, 0)))
    assert isinstance(other, StreamProtocolError)
    assert other.code == "wrong_stream"
    assert codec.receive(build_stop(Stop("MZ1"))) == [Stop("MZ1")]
    (after,) = codec.receive(build_inbound_media(Media("MZ1", b"\xff", 2, 0)))
    assert isinstance(after, StreamProtocolError)
    assert after.code == "after_stop"


def test_server_messages_carry_the_stream_sid() -> None:
    codec = MediaStreamServerCodec()
    try:
        codec.clear()
    except RuntimeError:
        pass
    else:
        raise AssertionError("clear before start must be refused")
    codec = started("MZabc")
    assert json.loads(codec.clear()) == {"event": "clear", "streamSid": "MZabc"}
    assert parse_outbound(codec.mark("m1")) == Mark("MZabc", "m1")
    assert parse_outbound(codec.media(b"\x01\x02")) == OutboundMedia("MZabc", b"\x01\x02")


def test_twilio_sample_messages_parse() -> None:
    """Messages as the shape documents them: counters are decimal strings."""
    start = {
        "event": "start", "sequenceNumber": "1", "streamSid": "MZ18ad",
        "start": {
            "accountSid": "AC12", "streamSid": "MZ18ad", "callSid": "CA12",
            "tracks": ["inbound"], "customParameters": {"FirstName": "Jane"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    media = {
        "event": "media", "sequenceNumber": "3", "streamSid": "MZ18ad",
        "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": "/w=="},
    }
    codec = MediaStreamServerCodec()
    (s,) = codec.receive(json.dumps(start))
    assert isinstance(s, Start)
    assert (s.call_sid, s.account_sid) == ("CA12", "AC12")
    assert s.custom_parameters == {"FirstName": "Jane"}
    assert codec.receive(json.dumps(media)) == [Media("MZ18ad", b"\xff", 1, 5, "inbound")]
