"""Training (filled in by the training work)."""

from fastapi import APIRouter

router = APIRouter(tags=["training"])
