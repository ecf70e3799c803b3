"""Pure, synchronous codecs: audio formats, framing, resampling, G.711, audio files, wire
formats.

Nothing in this package imports trio or touches a clock or a socket.
"""

from .audio import (
    AudioFormat,
    AudioFrame,
    FrameMs,
    PcmInput,
    Reframer,
    as_pcm,
    concat_frames,
    downmix,
    frame_fraction,
    upmix,
)
from .audiofile import read_audio
from .g711 import alaw_decode, alaw_encode, mulaw_decode, mulaw_encode
from .resample import StreamResampler
from .wav import read_wav, write_wav

__all__ = [
    "AudioFormat",
    "AudioFrame",
    "FrameMs",
    "PcmInput",
    "Reframer",
    "StreamResampler",
    "alaw_decode",
    "alaw_encode",
    "as_pcm",
    "concat_frames",
    "downmix",
    "frame_fraction",
    "mulaw_decode",
    "mulaw_encode",
    "read_audio",
    "read_wav",
    "upmix",
    "write_wav",
]
