#!/usr/bin/env bash
# Make sure `docker-compose` (Debian's package, 1.29) is on PATH: the compose test runs
# `docker-compose config`, which needs no Docker engine. Installs it when we are root and
# apt-get is there; otherwise says what to install. Always exits 0: the test itself fails
# with a clear message if the tool is still missing.
set -u

if command -v docker-compose >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "docker-compose not found: installing Debian's docker-compose package" >&2
    # --no-install-recommends: the package recommends docker.io (a whole engine) that `config` does not need.
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose; then
        command -v docker-compose >/dev/null 2>&1 && exit 0
    fi
    echo "warning: installing docker-compose failed" >&2
fi

echo "docker-compose is not installed: install Debian's docker-compose package" \
     "(as root: apt-get update && apt-get install docker-compose)" >&2
exit 0
