"""Teams (filled in by the teams work)."""

from fastapi import APIRouter

router = APIRouter(tags=["teams"])
