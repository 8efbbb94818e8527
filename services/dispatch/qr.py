"""QR images of a shift's check-in URL, for a screen or a printout: pure rendering with segno
(pure Python, no Pillow), no I/O."""

from __future__ import annotations

import io

import segno

# Level M (15 % of the symbol may be lost) keeps the symbol small, so that on a screen of a given
# size each module is as large as it can be: what a phone needs to read it from a few metres
# away. segno raises the level further whenever that fits in the same symbol version, free.
ERROR = "m"
QUIET_ZONE = 4  # modules of light border on every side, as ISO/IEC 18004 asks
DARK, LIGHT = "#000", "#fff"  # the light modules painted too: a screen's dark theme or a tinted page can't show through
PNG_SCALE = 10  # pixels per module: about 500 px square for a check-in URL
TITLE = "签到二维码 Check-in code"


def symbol(text: str) -> segno.QRCode:
    """The QR symbol (never a Micro QR, which phones' cameras don't read) encoding `text`."""
    return segno.make(text, error=ERROR, micro=False, boost_error=True)


def svg_of(text: str) -> bytes:
    """A scalable SVG: no width or height, only a viewBox of one unit per module, quiet zone
    included, so that the page's CSS sizes it."""
    out = io.BytesIO()
    symbol(text).save(
        out, kind="svg", scale=1, border=QUIET_ZONE, dark=DARK, light=LIGHT, omitsize=True, title=TITLE, nl=False
    )
    return out.getvalue()


def png_of(text: str, scale: int = PNG_SCALE) -> bytes:
    """A black-and-white PNG with `scale` pixels per module, quiet zone included."""
    if not 1 <= scale <= 100:
        raise ValueError("the scale is 1 to 100 pixels per module")
    out = io.BytesIO()
    symbol(text).save(out, kind="png", scale=scale, border=QUIET_ZONE, dark=DARK, light=LIGHT)
    return out.getvalue()
