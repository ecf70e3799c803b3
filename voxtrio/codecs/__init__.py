"""Pure, synchronous codecs: audio formats, framing, resampling, WAV, wire formats.

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
from .resample import StreamResampler
from .wav import read_wav, write_wav

__all__ = [
    "AudioFormat",
    "AudioFrame",
    "FrameMs",
    "PcmInput",
    "Reframer",
    "StreamResampler",
    "as_pcm",
    "concat_frames",
    "downmix",
    "frame_fraction",
    "read_wav",
    "upmix",
    "write_wav",
]
