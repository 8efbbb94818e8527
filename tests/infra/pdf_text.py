"""The text a PDF shows, read back from its content streams (no PDF library is installed here):
enough for what reportlab writes. Streams filtered with ASCII85 and Flate are decoded; each string
shown (Tj, TJ, ', ") is decoded by its font: a Type0 font with a UCS-2 CMap (reportlab's CID
fonts, Chinese) as UTF-16BE, a simple font as WinAnsi. One run per text-showing operator."""

from __future__ import annotations

import base64
import re
import zlib

_OBJECT = re.compile(rb"(\d+) 0 obj(.*?)endobj", re.DOTALL)
_STREAM = re.compile(rb"<<(.*)>>\s*stream\r?\n(.*?)\r?\n?endstream", re.DOTALL)
_FONT_NAME = re.compile(rb"/Name /(\w+)")
_DELIMITERS = b"()<>[]{}/%"
_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("f"): b"\f"}


def _fonts(pdf: bytes) -> dict[str, str]:
    """Resource name (F1, …) -> the codec its strings are in."""
    fonts = {}
    for _, body in _OBJECT.findall(pdf):
        if b"/Type /Font" in body and (name := _FONT_NAME.search(body)):
            unicode_cid = b"/Subtype /Type0" in body and b"UCS2" in body
            fonts[name.group(1).decode()] = "utf-16-be" if unicode_cid else "cp1252"
    return fonts


def _decoded(dictionary: bytes, data: bytes) -> bytes:
    filters = re.findall(rb"/(ASCII85Decode|FlateDecode)", dictionary)
    for name in filters:
        if name == b"ASCII85Decode":
            # reportlab ends the data with "~>" and leaves out the opening "<~"
            data = base64.a85decode(data.strip().removeprefix(b"<~").removesuffix(b"~>"))
        else:
            data = zlib.decompress(data)
    return data


def _literal(content: bytes, i: int) -> tuple[bytes, int]:
    """A literal string starting after its "(": its bytes, and the index after its ")"."""
    out, depth = bytearray(), 1
    while True:
        c = content[i]
        i += 1
        if c == ord("\\"):
            e = content[i]
            if e in _ESCAPES:
                out += _ESCAPES[e]
                i += 1
            elif ord("0") <= e <= ord("7"):
                digits = re.match(rb"[0-7]{1,3}", content[i : i + 3]).group(0)  # type: ignore[union-attr]
                out.append(int(digits, 8) & 0xFF)
                i += len(digits)
            elif e in b"\r\n":  # a line continuation
                i += 1
            else:
                out.append(e)
                i += 1
        elif c == ord("("):
            depth += 1
            out.append(c)
        elif c == ord(")"):
            depth -= 1
            if depth == 0:
                return bytes(out), i
            out.append(c)
        else:
            out.append(c)


def _tokens(content: bytes):  # type: ignore[no-untyped-def]
    """(kind, value): ("str", bytes), ("name", str), ("[", None), ("]", None), ("op", str), ("num", str)."""
    i, n = 0, len(content)
    while i < n:
        c = content[i]
        if chr(c).isspace():
            i += 1
        elif c == ord("%"):
            while i < n and content[i] not in b"\r\n":
                i += 1
        elif c == ord("("):
            value, i = _literal(content, i + 1)
            yield "str", value
        elif c == ord("<") and content[i : i + 2] == b"<<":
            i += 2
            yield "op", "<<"
        elif c == ord(">") and content[i : i + 2] == b">>":
            i += 2
            yield "op", ">>"
        elif c == ord("<"):
            end = content.index(b">", i)
            hexits = re.sub(rb"\s", b"", content[i + 1 : end])
            yield "str", bytes.fromhex((hexits + b"0" * (len(hexits) % 2)).decode())
            i = end + 1
        elif c in b"[]":
            yield chr(c), None
            i += 1
        elif c == ord("/"):
            j = i + 1
            while j < n and not chr(content[j]).isspace() and content[j] not in _DELIMITERS:
                j += 1
            yield "name", content[i + 1 : j].decode()
            i = j
        else:
            j = i
            while j < n and not chr(content[j]).isspace() and content[j] not in _DELIMITERS:
                j += 1
            word = content[i:j].decode("latin-1")
            yield ("num" if re.fullmatch(r"[-+]?\d*\.?\d+", word) else "op"), word
            i = max(j, i + 1)


def text_runs(pdf: bytes) -> list[str]:
    """Every string the PDF's pages show, in drawing order, decoded by its font."""
    fonts = _fonts(pdf)
    runs: list[str] = []
    for _, body in _OBJECT.findall(pdf):
        stream = _STREAM.search(body)
        if stream is None or b"/Subtype /Image" in stream.group(1):
            continue
        dictionary, data = stream.groups()
        content = _decoded(dictionary, data)
        codec, operands = "cp1252", []
        for kind, value in _tokens(content):
            if kind == "op":
                if value == "Tf":
                    names = [v for k, v in operands if k == "name"]
                    if names:
                        codec = fonts.get(names[-1], "cp1252")
                elif value in ("Tj", "'", '"', "TJ"):
                    shown = b"".join(v for k, v in operands if k == "str")
                    runs.append(shown.decode(codec, errors="replace"))
                operands = []
            elif kind not in ("[", "]"):
                operands.append((kind, value))
    return runs


def text_of(pdf: bytes) -> str:
    return "\n".join(text_runs(pdf))
