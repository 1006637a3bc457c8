#!/usr/bin/env bash
# What a plugin call costs: the same Turnout, the same request, the legacy
# lane vs. the optimized lane through the `passthrough` plugin (which relays
# every request to the legacy API through the host), interleaved round by
# round. The difference is the whole optimized-lane overhead: buffering the
# request, the C ABI call into Swift, the host's legacy call and the answer.
#
#   BENCH_DURATION=8 BENCH_ROUNDS=3 BENCH_CONNECTIONS=32 Benchmarks/plugin.sh
set -euo pipefail
# Ports below the ephemeral range (32768+), so no outgoing connection holds them.
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
DURATION=${BENCH_DURATION:-8}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-32}
CRM_PORT=${CRM_PORT:-18110}
TURNOUT_PORT=${TURNOUT_PORT:-18112}
REQ_PATH=${BENCH_PATH:-/api/messages/1}
WORK=$(mktemp -d /tmp/turnout-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
. Benchmarks/lib.sh

"$BIN/demo-crm" --port "$CRM_PORT" --seed 100 >"$WORK/crm.log" 2>&1 & PIDS+=($!)
wait_port "$CRM_PORT"
cat >"$WORK/proxy.conf" <<CONF
[server]
listen = "127.0.0.1:$TURNOUT_PORT"
[upstream]
url = "http://127.0.0.1:$CRM_PORT"
[rollout]
percent = 0
allow_override = true
[[plugin]]
name = "passthrough"
path = "$PWD/$BIN/libTurnoutPassthrough.so"
routes = ["GET /api/messages/*"]
CONF
"$BIN/turnout" --config "$WORK/proxy.conf" >"$WORK/turnout.log" 2>&1 & PIDS+=($!)
wait_port "$TURNOUT_PORT"
for lane in legacy optimized; do
  wrk -t1 -c4 -d1s -H 'Authorization: Bearer demo' -H "X-Turnout-Lane: $lane" "http://127.0.0.1:$TURNOUT_PORT$REQ_PATH" >/dev/null
done
# Make sure the optimized lane really is the plugin.
curl -s -D - -o /dev/null -H 'Authorization: Bearer demo' -H 'X-Turnout-Lane: optimized' "http://127.0.0.1:$TURNOUT_PORT$REQ_PATH" | grep -qi 'x-turnout-plugin: passthrough@' \
  || { echo "the optimized lane is not served by the passthrough plugin" >&2; cat "$WORK/turnout.log" >&2; exit 1; }

declare -A RPS P50 P99
for load in 1 "$CONNS"; do
  for lane in legacy optimized; do RPS[$lane,$load]=""; P50[$lane,$load]=""; P99[$lane,$load]=""; done
  for round in $(seq "$ROUNDS"); do
    for lane in legacy optimized; do
      read -r rps p50 p99 bad < <(measure "$TURNOUT_PORT" "$load" -H "X-Turnout-Lane: $lane")
      if [ "$bad" != "0" ]; then echo "warning: $lane answered $bad non-2xx responses" >&2; fi
      RPS[$lane,$load]+="$rps "; P50[$lane,$load]+="$p50 "; P99[$lane,$load]+="$p99 "
      printf '  round %s  %-9s c=%-3s %10.0f req/s  p50 %7.0f us  p99 %7.0f us\n' "$round" "$lane" "$load" "$rps" "$p50" "$p99" >&2
    done
  done
done

echo
echo "## Plugin lane: $(date -u +%Y-%m-%d), $(nproc) cores, path $REQ_PATH, median of $ROUNDS rounds x ${DURATION}s"
echo
echo "| lane | conns | req/s | p50 µs | p99 µs |"
echo "|---|---|---|---|---|"
declare -A M_RPS M_P50
for load in 1 "$CONNS"; do
  for lane in legacy optimized; do
    M_RPS[$lane,$load]=$(echo "${RPS[$lane,$load]}" | median)
    M_P50[$lane,$load]=$(echo "${P50[$lane,$load]}" | median)
    printf '| %s | %s | %.0f | %.0f | %.0f |\n' "$lane" "$load" "${M_RPS[$lane,$load]}" "${M_P50[$lane,$load]}" "$(echo "${P99[$lane,$load]}" | median)"
  done
done
echo
for load in 1 "$CONNS"; do
  awk -v l="$load" -v lr="${M_RPS[legacy,$load]}" -v orps="${M_RPS[optimized,$load]}" -v lp="${M_P50[legacy,$load]}" -v op="${M_P50[optimized,$load]}" 'BEGIN {
    printf "c=%s: optimized/legacy req/s = %.2fx; p50 optimized - legacy = %+.0f us; per-request cost from throughput (1/rps difference) = %+.1f us\n", l, orps/lr, op-lp, (1e6/orps - 1e6/lr) }'
done
