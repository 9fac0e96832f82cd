#!/bin/sh
# make janus-demo: Janus (Debian's `janus`, VideoRoom, loopback only) + speakerswitch (RTP
# ingest and HTTP API) + the demo page (bridge.py). Open http://127.0.0.1:$PAGE_PORT/ in two
# tabs. Ctrl-C stops all three.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-python3}
JANUS_HTTP_PORT=${JANUS_HTTP_PORT:-8088}
RTP_PORT=${RTP_PORT:-5004}
GRPC_PORT=${GRPC_PORT:-50061}
API_PORT=${API_PORT:-8081}
PAGE_PORT=${PAGE_PORT:-8090}
METRICS_PORT=${METRICS_PORT:--1}  # speakerswitch's Prometheus metrics; -1: off
command -v janus >/dev/null || { echo "janus is not installed: apt-get install janus libjs-janus-gateway" >&2; exit 1; }
conf=$(mktemp -d /tmp/speakerswitch-janus.XXXXXX)
for f in "$here"/conf/*.jcfg; do
  sed -e "s|@CONF@|$conf|" -e "s|@JANUS_HTTP_PORT@|$JANUS_HTTP_PORT|" "$f" > "$conf/$(basename "$f")"
done
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; rm -rf "$conf"; }
trap cleanup EXIT INT TERM
janus --configs-folder="$conf" --config="$conf/janus.jcfg" --disable-colors > "$conf/janus.log" 2>&1 &
pids="$pids $!"
$PY -m service.cli serve --insecure-no-auth --port "$GRPC_PORT" --metrics-port "$METRICS_PORT" --http-port "$API_PORT" \
  --rtp-port "$RTP_PORT" &
pids="$pids $!"
PYTHONPATH="$here/../..${PYTHONPATH:+:$PYTHONPATH}" $PY "$here/bridge.py" --port "$PAGE_PORT" --janus "http://127.0.0.1:$JANUS_HTTP_PORT/janus" \
  --grpc "127.0.0.1:$GRPC_PORT" --api "http://127.0.0.1:$API_PORT" --rtp-port "$RTP_PORT" &
pids="$pids $!"
echo "janus-demo: open http://127.0.0.1:$PAGE_PORT/ (Janus log: $conf/janus.log)"
wait
