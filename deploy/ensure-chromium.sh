#!/usr/bin/env bash
# Make sure Debian's `chromium` (and a CJK font, so that screenshots show the Chinese) is there:
# the dashboard test runs it headless. Installs it when we are root and apt-get is there;
# otherwise says what to install. Always exits 0: the test itself fails with a clear message
# if the browser is still missing.
set -u

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "chromium not found: installing Debian's chromium and fonts-wqy-zenhei packages" >&2
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-wqy-zenhei; then
        command -v chromium >/dev/null 2>&1 && exit 0
    fi
    echo "warning: installing chromium failed" >&2
fi

echo "chromium is not installed: install Debian's chromium package" \
     "(as root: apt-get update && apt-get install chromium fonts-wqy-zenhei)" >&2
exit 0
