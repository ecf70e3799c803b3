"""Phone calls: a media-stream front door (the Twilio Media Streams JSON shape) that
runs one voxtrio session per call.

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_media_streams, make_provider,
                                             store=PostgresTranscriptStore(dsn)))
        ...
        await server.drain(deadline_s=30)

See docs/deployment.md for running many workers behind a load balancer.
"""

from .call import CallStats, ProviderFactory
from .server import MediaStreamServer, ServerStats, serve_media_streams

__all__ = [
    "CallStats",
    "MediaStreamServer",
    "ProviderFactory",
    "ServerStats",
    "serve_media_streams",
]
