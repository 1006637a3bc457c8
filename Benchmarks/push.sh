#!/usr/bin/env bash
# Push hub (SPEC §6) in a real `turnout` process, driven by push-bench
# (Benchmarks/push, a standalone SwiftPM package built here):
#   1. fan-out: 5,000 WebSocket subscribers on conversation:1, 50 publishes
#      (one per 100 ms) through POST /api/optimized/broadcast; latency of a
#      publish = its last delivery − the moment before the POST was written.
#   2. hold: a second, fresh turnout; connections opened 1,000 at a time up
#      to 10,000 (each subscribed to its own conversation:<i>), kept open
#      answering pings; turnout's VmRSS before and while holding gives the
#      memory per connection.
# Targets: p99 ≤ 50 ms at 5,000 subscribers; 10,000 connections held.
#
# No reference server: Centrifugo (the natural one, ~30–50 KB RAM per
# connection, see /work/shared/NOTES.md) is not installed here, and no
# loopback floor is measured. The subscribers share the machine's cores with
# turnout, so the latency includes their own socket reads.
#
#   BENCH_SUBSCRIBERS=5000 BENCH_PUBLISHES=50 BENCH_HOLD_TARGET=10000 Benchmarks/push.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
SUBSCRIBERS=${BENCH_SUBSCRIBERS:-5000}
PUBLISHES=${BENCH_PUBLISHES:-50}
INTERVAL_MS=${BENCH_INTERVAL_MS:-100}
HOLD_TARGET=${BENCH_HOLD_TARGET:-10000}
HOLD_STEP=${BENCH_HOLD_STEP:-1000}
HOLD_SECONDS=${BENCH_HOLD_SECONDS:-10}
P99_TARGET_MS=50
# Ports below the ephemeral range (32768+), so no outgoing connection holds them.
CRM_PORT=${CRM_PORT:-18116}
FANOUT_PORT=${FANOUT_PORT:-18117}
HOLD_PORT=${HOLD_PORT:-18118}
SECRET=push-bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz  # push.jwt_secret: ≥ 32 bytes
ADMIN_TOKEN=push-bench-admin-token
WORK=$(mktemp -d /tmp/turnout-push-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
. Benchmarks/lib.sh

# Both turnout and push-bench hold one descriptor per connection (and then some).
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((HOLD_TARGET + 1000)) ]; then
  echo "warning: open-file limit $(ulimit -n) is below $((HOLD_TARGET + 1000)); hold will stop short" >&2
fi

echo "building push-bench..." >&2
swift build -c release --package-path Benchmarks/push >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; exit 1; }
PUSH_BENCH=Benchmarks/push/.build/release/push-bench

turnout_conf() {  # PORT
  cat <<CONF
[server]
listen = "127.0.0.1:$1"
admin_token = "$ADMIN_TOKEN"
[upstream]
url = "http://127.0.0.1:$CRM_PORT"
[rollout]
percent = 0
[push]
jwt_secret = "$SECRET"
max_connections = 12000
heartbeat_interval_ms = 30000
CONF
}

start_turnout() {  # NAME PORT → pid in TURNOUT_PID
  mkdir -p "$WORK/$1"  # the audit log goes beside the config
  turnout_conf "$2" >"$WORK/$1/proxy.conf"
  "$BIN/turnout" --config "$WORK/$1/proxy.conf" >"$WORK/$1/turnout.log" 2>&1 & TURNOUT_PID=$!
  PIDS+=("$TURNOUT_PID")
  wait_port "$2"
}

val() { sed -n "s/^$2=//p" "$1" | tail -n 1; }  # val FILE KEY
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

"$BIN/demo-crm" --port "$CRM_PORT" --seed 100 >"$WORK/crm.log" 2>&1 & PIDS+=($!)
wait_port "$CRM_PORT"

# 1. Fan-out.
start_turnout fanout "$FANOUT_PORT"
echo "fan-out: $SUBSCRIBERS subscribers, $PUBLISHES publishes every $INTERVAL_MS ms..." >&2
"$PUSH_BENCH" fanout --port "$FANOUT_PORT" --admin-token "$ADMIN_TOKEN" --secret "$SECRET" \
  --subscribers "$SUBSCRIBERS" --publishes "$PUBLISHES" --interval-ms "$INTERVAL_MS" >"$WORK/fanout.out"
F="$WORK/fanout.out"
if [ "$(val "$F" connected)" != "$SUBSCRIBERS" ]; then
  echo "warning: only $(val "$F" connected) of $SUBSCRIBERS subscribed ($(val "$F" connect_failures))" >&2
fi
kill "$TURNOUT_PID"

# 2. Hold, on a fresh turnout. A first 100 connections fault in the code and
# buffers every connection shares, so that the baseline excludes them.
start_turnout hold "$HOLD_PORT"
HOLD_PID=$TURNOUT_PID
"$PUSH_BENCH" hold --port "$HOLD_PORT" --secret "$SECRET" --target 100 --step 100 --hold-s 0 >/dev/null 2>&1
sleep 1
rss_before=$(rss_kib "$HOLD_PID")
echo "hold: up to $HOLD_TARGET connections, $HOLD_STEP at a time..." >&2
"$PUSH_BENCH" hold --port "$HOLD_PORT" --secret "$SECRET" --target "$HOLD_TARGET" --step "$HOLD_STEP" \
  --hold-s "$HOLD_SECONDS" >"$WORK/hold.out" & HOLDER=$!
PIDS+=("$HOLDER")
H="$WORK/hold.out"
until grep -qs '^ready=' "$H"; do
  kill -0 "$HOLDER" 2>/dev/null || { echo "push-bench hold exited early" >&2; exit 1; }
  sleep 0.2
done
sleep 1
rss_after=$(rss_kib "$HOLD_PID")
wait "$HOLDER"
held=$(val "$H" held)

echo
echo "## Push hub: $(date -u +%Y-%m-%d), $(nproc) cores, $SUBSCRIBERS subscribers x $PUBLISHES publishes every $INTERVAL_MS ms; hold to $HOLD_TARGET in steps of $HOLD_STEP"
echo
echo "| subscribers | p50 ms | p99 ms | max ms | missed | connect s | connections held | KiB per connection |"
echo "|---|---|---|---|---|---|---|---|"
kib_per=$(awk -v a="$rss_after" -v b="$rss_before" -v n="$held" 'BEGIN { printf "%.1f", (n > 0 ? (a - b) / n : 0) }')
echo "| $(val "$F" connected) | $(val "$F" p50_ms) | $(val "$F" p99_ms) | $(val "$F" max_ms) | $(val "$F" missed) | $(val "$F" connect_s) | $held | $kib_per |"
echo
echo "First delivery p50 $(val "$F" first_p50_ms) ms; broadcast POST round trip p50 $(val "$F" post_p50_ms) ms."
echo "turnout VmRSS $((rss_before / 1024)) MiB before, $((rss_after / 1024)) MiB with $held connections;" \
  "$(val "$H" alive) still open after ${HOLD_SECONDS} s; refused/failed: $(val "$H" failures)."
met() { if [ "$1" = 1 ]; then echo met; else echo "NOT met"; fi; }
p99_ok=$(awk -v p="$(val "$F" p99_ms)" -v t="$P99_TARGET_MS" -v m="$(val "$F" missed)" 'BEGIN { print ((p != "nan" && p + 0 <= t + 0 && m + 0 == 0) ? 1 : 0) }')
held_ok=$([ "$held" -ge "$HOLD_TARGET" ] && [ "$(val "$H" alive)" -ge "$HOLD_TARGET" ] && echo 1 || echo 0)
echo "Targets: p99 <= $P99_TARGET_MS ms at $SUBSCRIBERS subscribers: $(met "$p99_ok"); $HOLD_TARGET connections held: $(met "$held_ok")."
