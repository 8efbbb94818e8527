"""A certificate's sheet (domain/certificates.py) laid out as a PDF with reportlab. Chinese is set
in the Adobe-GB1 font every PDF reader carries (STSong-Light, not embedded: nothing to ship or
download); numbers, ids and the digest in the standard Helvetica and Courier."""

from __future__ import annotations

import functools
from io import BytesIO
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from services.registry.domain.certificates import Sheet

CJK, LATIN, MONO = "STSong-Light", "Helvetica", "Courier"
MARGIN = 18 * mm


@functools.cache
def _fonts() -> None:
    pdfmetrics.registerFont(UnicodeCIDFont(CJK))


def _style(name: str, size: float, *, font: str = CJK, align: int = 0, leading: float | None = None) -> ParagraphStyle:
    return ParagraphStyle(
        name, fontName=font, fontSize=size, leading=leading or size * 1.35, alignment=align, wordWrap="CJK"
    )


TITLE = _style("title", 20, align=1, leading=28)
LABEL = _style("label", 10.5)
VALUE = _style("value", 10.5)
CELL = _style("cell", 9)
SMALL = _style("small", 7.5)
ID = _style("id", 5.8, font=MONO)
NUMBER = _style("number", 9, font=LATIN, align=2)
DIGEST = _style("digest", 8.5, font=MONO)


def _latin(text: str, font: str = LATIN) -> str:
    """Markup for ASCII text (an id, a date, the digest) set in a Latin font inside a paragraph."""
    return f'<font name="{font}">{escape(text)}</font>'


def _value(text: str) -> Paragraph:
    return Paragraph(_latin(text) if text.isascii() else escape(text), VALUE)


def render(sheet: Sheet, *, footer: str) -> bytes:
    """The PDF of a sheet; `footer` (the certificate number) is printed on every page with its number."""
    _fonts()
    out = BytesIO()
    document = SimpleDocTemplate(
        out, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN, bottomMargin=MARGIN + 6 * mm,
        title=f"{sheet.title} {footer}", author="Beacon", subject=sheet.title,
    )  # fmt: skip
    width = A4[0] - 2 * MARGIN

    fields = Table(
        [[Paragraph(escape(label), LABEL), _value(value)] for label, value in sheet.fields],
        colWidths=[32 * mm, width - 32 * mm],
        style=TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE"), ("BOTTOMPADDING", (0, 0), (-1, -1), 4)]),
    )

    header = [
        Paragraph(text, CELL)
        for text in ("序号", "服务日期", "服务地点 · 领域 · 对象（活动）", "小时", "记录编号 / 凭证号")
    ]
    rows = [header]
    for n, row in enumerate(sheet.rows, start=1):
        rows.append([
            Paragraph(_latin(str(n)), CELL),
            Paragraph(_latin(row.service_date), CELL),
            Paragraph(escape(row.place_and_activity), CELL),
            Paragraph(escape(row.hours), NUMBER),
            [Paragraph(_latin(row.record_id), CELL), Paragraph(escape(row.event_id), ID)],
        ])  # fmt: skip
    count_text, total_hours = sheet.total
    rows.append([Paragraph(escape(count_text), CELL), "", "", Paragraph(escape(total_hours), NUMBER), ""])
    records = Table(
        rows,
        colWidths=[11 * mm, 22 * mm, width - 11 * mm - 22 * mm - 20 * mm - 50 * mm, 20 * mm, 50 * mm],
        repeatRows=1,
        style=TableStyle([
            ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
            ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ("SPAN", (0, -1), (2, -1)),
        ]),
    )  # fmt: skip

    closing = Table(
        [
            *([Paragraph(escape(label), LABEL), _value(value)] for label, value in sheet.closing),
            [Paragraph(escape(sheet.digest[0]), LABEL), Paragraph(escape(sheet.digest[1]), DIGEST)],
        ],
        colWidths=[32 * mm, width - 32 * mm],
        style=TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE"), ("BOTTOMPADDING", (0, 0), (-1, -1), 4)]),
    )

    def on_page(canvas: Canvas, doc: SimpleDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(LATIN, 8)
        canvas.drawRightString(A4[0] - MARGIN, MARGIN / 2, f"{footer}  {doc.page}")
        canvas.restoreState()

    document.build(
        [
            Paragraph(escape(sheet.title), TITLE),
            Spacer(1, 6 * mm),
            fields,
            Spacer(1, 4 * mm),
            Paragraph(escape(sheet.statement), VALUE),
            Spacer(1, 4 * mm),
            records,
            Spacer(1, 6 * mm),
            closing,
            Spacer(1, 3 * mm),
            Paragraph(escape(sheet.digest_note), SMALL),
        ],
        onFirstPage=on_page,
        onLaterPages=on_page,
    )
    return out.getvalue()
