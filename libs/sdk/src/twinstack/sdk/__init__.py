"""The twinstack Python SDK.

>>> from twinstack.sdk import TwinstackClient, Point
>>> with TwinstackClient() as client:
...     client.create_twin("pump-1", "dtmi:twinstack:examples:Pump;1")
...     client.ingest([Point("pump-1", fields={"temperature_c": 61.5})])
...     client.get_state("pump-1")
"""

from twinstack.sdk.client import ApiError, Endpoints, Point, TwinstackClient, make_frame

__all__ = ["ApiError", "Endpoints", "Point", "TwinstackClient", "make_frame"]
