# One image for all four Beacon services. Compose (or you) picks the service:
#   docker run beacon:local python -m services.registry   (or dispatch, points, reporting)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BEACON_HOST=0.0.0.0

RUN groupadd --system --gid 10001 beacon \
    && useradd --system --uid 10001 --gid beacon --home-dir /app --shell /usr/sbin/nologin beacon

# Pinned dependencies first, so code changes do not reinstall them.
COPY requirements.lock /tmp/build/requirements.lock
RUN pip install -r /tmp/build/requirements.lock

# Then the project itself (packages `shared` and `services`), into site-packages.
COPY pyproject.toml /tmp/build/
COPY shared /tmp/build/shared
COPY services /tmp/build/services
RUN pip install --no-deps /tmp/build && rm -rf /tmp/build

# /app holds only data/ (the default SQLite location when BEACON_DATABASE_URL is unset) and the
# mount points of the token-signing keys (a volume mounted there starts out owned by beacon).
WORKDIR /app
RUN mkdir -p /app/data /app/token-keys/private /app/token-keys/public && chown -R beacon:beacon /app
USER beacon

EXPOSE 8101 8102 8103 8104

# No default service: compose sets `command: ["python", "-m", "services.<name>"]`.
CMD ["python", "-c", "import sys; sys.exit('beacon image: run `python -m services.<registry|dispatch|points|reporting>`')"]
