"""The shift's QR images: a valid PNG and a well-formed SVG, each decoded back to its modules
(zlib and the SVG path, no decoder library) and compared with the symbol segno makes for the
text; the quiet zone; and the error-correction level read from the symbol's own format bits."""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
import zlib

import pytest
import segno

from services.dispatch import qr

URL = "https://dispatch.beacon.example.gov.cn/check-in?code=SH00000001.59123456.Qx3v_9kLm-2aBcDeFgHiJw"
SVG_NS = "{http://www.w3.org/2000/svg}"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Format bits after unmasking (ISO/IEC 18004 table 12): the error-correction level's two bits.
LEVELS = {0b01: "L", 0b00: "M", 0b11: "Q", 0b10: "H"}


def expected_modules(text: str) -> list[list[int]]:
    return [list(row) for row in segno.make(text, error=qr.ERROR, micro=False).matrix]


def bordered(modules: list[list[int]], border: int) -> list[list[int]]:
    width = len(modules[0]) + 2 * border
    blank = [[0] * width for _ in range(border)]
    return blank + [[0] * border + row + [0] * border for row in modules] + [row[:] for row in blank]


# --- Decoding, by hand ----------------------------------------------------------------------------


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == PNG_SIGNATURE
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        at += 12 + length
    return chunks


def png_pixels(data: bytes) -> list[list[int]]:
    """1 for a dark pixel, 0 for a light one, from a greyscale or palette PNG of any bit depth."""
    chunks = png_chunks(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert colour in (0, 3) and interlace == 0
    palette = next((body for kind, body in chunks if kind == b"PLTE"), b"")
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = (width * depth + 7) // 8
    bpp = max(1, depth // 8)
    rows, previous, at = [], bytearray(stride), 0
    for _ in range(height):
        kind, line = raw[at], bytearray(raw[at + 1 : at + 1 + stride])
        at += 1 + stride
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, up_left = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
            else:
                assert kind == 0, f"unknown PNG filter {kind}"
        previous = line
        bits = "".join(f"{byte:08b}" for byte in line)
        values = [int(bits[x * depth : (x + 1) * depth], 2) for x in range(width)]
        if colour == 3:
            values = [palette[3 * v] for v in values]  # the red of the palette entry: black or white
        else:
            values = [v * 255 // (2**depth - 1) for v in values]
        rows.append([1 if v < 128 else 0 for v in values])
    assert at == len(raw)
    return rows


def png_modules(data: bytes, scale: int) -> list[list[int]]:
    pixels = png_pixels(data)
    assert len(pixels) % scale == 0 and len(pixels[0]) % scale == 0
    for y, row in enumerate(pixels):  # every module a solid square of scale × scale pixels
        for x, value in enumerate(row):
            assert value == pixels[y - y % scale][x - x % scale], f"pixel ({x}, {y}) differs from its module"
    return [row[::scale] for row in pixels[::scale]]


def svg_modules(data: bytes) -> tuple[list[list[int]], ET.Element]:
    """Draws the dark path (segno's `M x y`, `m dx dy` and `h n` runs, half a module down) into a grid."""
    root = ET.fromstring(data)
    _, _, width, height = (int(v) for v in root.attrib["viewBox"].split())
    grid = [[0] * width for _ in range(height)]
    (path,) = [p for p in root.iter(f"{SVG_NS}path") if p.get("stroke")]
    x = y = 0.0
    for command, args in re.findall(r"([MmHh])([-\d. ]+)", path.attrib["d"]):
        numbers = [float(n) for n in args.split()]
        if command == "M":
            x, y = numbers
        elif command == "m":
            x, y = x + numbers[0], y + numbers[1]
        else:
            assert command == "h"
            run = int(numbers[0])
            for i in range(run):
                grid[int(y - 0.5)][int(x) + i] = 1
            x += run
    return grid, root


def error_level(modules: list[list[int]]) -> str:
    """The level in the format information beside the top-left finder (ISO/IEC 18004 7.9)."""
    cells = [(r, 8) for r in (0, 1, 2, 3, 4, 5, 7, 8)] + [(8, c) for c in (7, 5, 4, 3, 2, 1, 0)]
    bits = sum(modules[r][c] << i for i, (r, c) in enumerate(cells)) ^ 0b101010000010010
    return LEVELS[bits >> 13]


# --- Tests ----------------------------------------------------------------------------------------


def test_the_png_is_a_valid_png_whose_header_gives_the_symbol_and_quiet_zone_at_the_scale() -> None:
    data = qr.png_of(URL, scale=6)
    assert data.startswith(PNG_SIGNATURE)
    kind, ihdr = png_chunks(data)[0]
    width, height = struct.unpack(">II", ihdr[:8])
    side = len(expected_modules(URL)) + 2 * qr.QUIET_ZONE
    assert kind == b"IHDR" and width == height == side * 6


def test_the_png_holds_exactly_the_modules_of_the_url_inside_a_light_quiet_zone() -> None:
    modules = png_modules(qr.png_of(URL, scale=3), scale=3)
    assert modules == bordered(expected_modules(URL), qr.QUIET_ZONE)


def test_the_default_png_is_large_enough_for_a_screen() -> None:
    modules = png_modules(qr.png_of(URL), scale=qr.PNG_SCALE)
    assert modules == bordered(expected_modules(URL), qr.QUIET_ZONE)
    assert len(png_pixels(qr.png_of(URL))) >= 400


def test_the_svg_is_well_formed_with_one_unit_per_module_and_no_fixed_size() -> None:
    data = qr.svg_of(URL)
    root = ET.fromstring(data)  # raises on anything that is not well-formed XML
    side = len(expected_modules(URL)) + 2 * qr.QUIET_ZONE
    assert root.tag == f"{SVG_NS}svg"
    assert root.attrib["viewBox"] == f"0 0 {side} {side}"
    assert "width" not in root.attrib and "height" not in root.attrib  # the page's CSS sizes it
    assert root.find(f"{SVG_NS}title").text == qr.TITLE


def test_the_svg_draws_exactly_the_modules_of_the_url_on_a_painted_light_background() -> None:
    modules, root = svg_modules(qr.svg_of(URL))
    assert modules == bordered(expected_modules(URL), qr.QUIET_ZONE)
    background = [p for p in root.iter(f"{SVG_NS}path") if p.get("fill")]
    side = len(modules)
    assert [(p.get("fill"), p.get("d")) for p in background] == [(qr.LIGHT, f"M0 0h{side}v{side}h-{side}z")]


def test_the_symbol_corrects_at_least_level_m_as_its_own_format_bits_say() -> None:
    modules = expected_modules(URL)
    assert error_level(modules) in ("M", "Q", "H")
    decoded = [
        row[qr.QUIET_ZONE : -qr.QUIET_ZONE] for row in svg_modules(qr.svg_of(URL))[0][qr.QUIET_ZONE : -qr.QUIET_ZONE]
    ]
    assert error_level(decoded) == qr.symbol(URL).error


def test_a_check_in_url_fits_a_symbol_small_enough_to_read_across_a_room() -> None:
    side = len(expected_modules(URL))
    assert (side - 17) // 4 <= 7  # version 7 or lower: 45 modules or fewer a side


def test_two_codes_of_the_same_shift_make_different_images() -> None:
    later = URL.replace("59123456", "59123457")
    assert qr.png_of(URL) != qr.png_of(later) and qr.svg_of(URL) != qr.svg_of(later)


def test_a_scale_outside_one_to_a_hundred_is_refused() -> None:
    with pytest.raises(ValueError):
        qr.png_of(URL, scale=0)
    with pytest.raises(ValueError):
        qr.png_of(URL, scale=101)
