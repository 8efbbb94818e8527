"""Any table reporting answers with, as CSV or as an Excel workbook."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from fastapi.responses import Response
from openpyxl import Workbook

FORMATS = ("json", "csv", "xlsx")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# A route's `responses=` for its 200 when `format` may ask for a download.
DOWNLOADS: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            XLSX: {"schema": {"type": "string", "format": "binary"}},
        }
    }
}


def table(name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], form: str) -> Response:
    """`rows` under `columns`, as a download named after `name`."""
    if form == "csv":
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(columns)
        writer.writerows(rows)
        # The BOM makes Excel read the Chinese names as UTF-8.
        body, media_type = ("\ufeff" + text.getvalue()).encode(), "text/csv; charset=utf-8"
    else:
        workbook = Workbook()
        sheet = workbook.active
        sheet.title = name[:31]
        sheet.append(list(columns))
        for row in rows:
            sheet.append(list(row))
        out = io.BytesIO()
        workbook.save(out)
        body, media_type = out.getvalue(), XLSX
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{name}.{form}"'})
