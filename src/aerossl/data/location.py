"""Where and when an image was taken: :class:`Location`, and the checks on its parts.

The lowest data module: raster headers, patch folders and metadata files all produce these.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from aerossl.errors import DataError


@dataclass(frozen=True)
class Location:
    """Where and when one image was taken (WGS84 degrees; ``date`` may be unknown)."""

    lat: float
    lon: float
    date: dt.date | None = None


def check_location(lat: float, lon: float, where: str) -> tuple[float, float]:
    """Latitude in [-90, 90] and longitude in [-180, 180] degrees, else :class:`DataError`."""
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise DataError(f"{where}: latitude {lat} is outside [-90, 90] degrees (is it swapped "
                        "with the longitude, or in a projected CRS?)")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise DataError(f"{where}: longitude {lon} is outside [-180, 180] degrees")
    return float(lat), float(lon)


def parse_date(text: str, where: str) -> dt.date:
    """An ISO date (``2017-06-13``, ``2017-06-13 10:10:32``, ``2017-06-13T10:10:32Z``) or the
    TIFF form ``2017:06:13 10:10:32``; anything else is a :class:`DataError` naming ``where``."""
    s = text.strip()
    if len(s) >= 10 and s[4] == ":" and s[7] == ":":  # TIFF DateTime "YYYY:MM:DD HH:MM:SS"
        s = s[:4] + "-" + s[5:7] + "-" + s[8:]
    try:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).date()
    except ValueError:
        raise DataError(f"{where}: cannot parse date {text!r}; write it as YYYY-MM-DD "
                        "(optionally with a time, e.g. 2017-06-13 10:10:32)") from None
