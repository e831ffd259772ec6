#!/usr/bin/env bash
# The browser the studio's test drives (tests/app/test_browser.py): Debian's chromium package,
# installed with apt-get when missing and we are root. Nothing is downloaded by playwright (its
# own browser download is never used); the Python side (gradio, gradio_client, playwright)
# comes from the dev extra (`make test` installs it). Idempotent; exit 1 if Chromium is still
# missing, so CI stops here with a message instead of failing later.
set -euo pipefail
CHROMIUM=${NIDIFF_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium (for the studio's browser test)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
if [ ! -x "$CHROMIUM" ]; then
    echo "error: $CHROMIUM is missing; install Debian's chromium package (as root:" \
         "apt-get install -y chromium) or set NIDIFF_CHROMIUM to a Chromium binary" >&2
    exit 1
fi
