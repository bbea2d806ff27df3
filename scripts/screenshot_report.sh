#!/usr/bin/env bash
# Render a run's report.html in headless Chromium and save a screenshot, to check how the report looks.
#   scripts/screenshot_report.sh RUN_DIR OUT.png [WIDTHxHEIGHT]
# Needs chromium (Debian: apt-get install -y chromium). Writes RUN_DIR/report.html first when it is missing
# (`stangen report RUN_DIR`). Not part of the test suite.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 RUN_DIR OUT.png [WIDTHxHEIGHT]  (default size 1280x4000)" >&2
    exit 1
fi
run_dir=$1
out=$2
size=${3:-1280x4000}
width=${size%x*}
height=${size#*x}

browser=""
for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then browser=$candidate; break; fi
done
if [[ -z $browser ]]; then
    echo "error: no chromium found; install it: apt-get update && apt-get install -y chromium" >&2
    exit 1
fi

if [[ ! -f $run_dir/report.html ]]; then
    stangen report "$run_dir"
fi
report=$(cd "$run_dir" && pwd)/report.html
out_abs=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# offline: the report must load without any network access (no external resources)
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" \
    --screenshot="$out_abs" --window-size="$width,$height" "file://$report" 2>"$profile/chromium.log" || {
    cat "$profile/chromium.log" >&2
    exit 1
}
if [[ ! -s $out_abs ]]; then
    echo "error: no screenshot written; chromium said:" >&2
    cat "$profile/chromium.log" >&2
    exit 1
fi
echo "$out_abs"
