#!/usr/bin/env bash
# Turnout's legacy lane vs. direct-to-upstream and nginx, measured in the same
# run and interleaved round by round so machine noise hits all three alike.
#
#   BENCH_DURATION=8 BENCH_ROUNDS=3 BENCH_CONNECTIONS=32 Benchmarks/proxy.sh
#
# Prints requests/s and p50/p99 per target at light load (1 connection) and at
# BENCH_CONNECTIONS connections, then the ratios Turnout/direct and
# Turnout/nginx. Needs a release build, wrk and nginx (make bench installs them).
set -euo pipefail
# Ports below the ephemeral range (32768+), so no outgoing connection holds them.
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
DURATION=${BENCH_DURATION:-8}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-32}
CRM_PORT=${CRM_PORT:-18100}
NGINX_PORT=${NGINX_PORT:-18101}
TURNOUT_PORT=${TURNOUT_PORT:-18102}
REQ_PATH=${BENCH_PATH:-/api/messages/1}
WORK=$(mktemp -d /tmp/turnout-bench.XXXXXX)
chmod 755 "$WORK"  # nginx workers run as nobody
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

. Benchmarks/lib.sh

"$BIN/demo-crm" --port "$CRM_PORT" --seed 100 >"$WORK/crm.log" 2>&1 & PIDS+=($!)
CRM_PID=$!
wait_port "$CRM_PORT"

write_nginx_conf "$WORK/nginx" "
  upstream crm { server 127.0.0.1:$CRM_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://crm;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
"
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >"$WORK/nginx.log" 2>&1 & PIDS+=($!)
NGINX_MASTER=$!
wait_port "$NGINX_PORT"

cat >"$WORK/proxy.conf" <<CONF
[server]
listen = "127.0.0.1:$TURNOUT_PORT"
debug_headers = true
[upstream]
url = "http://127.0.0.1:$CRM_PORT"
max_connections = 64
CONF
"$BIN/turnout" --config "$WORK/proxy.conf" >"$WORK/turnout.log" 2>&1 & PIDS+=($!)
TURNOUT_PID=$!
wait_port "$TURNOUT_PORT"
NGINX_WORKER=$(pgrep -P "$NGINX_MASTER" | head -1)
declare -A CPU_PID=([direct]=$CRM_PID [nginx]=$NGINX_WORKER [turnout]=$TURNOUT_PID)
declare -A CPU_USER CPU_SYS CPU_REQS

# Warm up every path (connections, caches, JIT-free but page faults).
for port in $CRM_PORT $NGINX_PORT $TURNOUT_PORT; do
  wrk -t1 -c4 -d1s -H 'Authorization: Bearer demo' "http://127.0.0.1:$port$REQ_PATH" >/dev/null
done

declare -A RPS P50 P99
targets=(direct nginx turnout)
declare -A PORT=([direct]=$CRM_PORT [nginx]=$NGINX_PORT [turnout]=$TURNOUT_PORT)
for load in 1 "$CONNS"; do
  for t in "${targets[@]}"; do RPS[$t,$load]=""; P50[$t,$load]=""; P99[$t,$load]=""; done
  for round in $(seq "$ROUNDS"); do
    for t in "${targets[@]}"; do
      read -r u0 s0 < <(cpu_ticks "${CPU_PID[$t]}")
      read -r rps p50 p99 bad < <(measure "${PORT[$t]}" "$load")
      read -r u1 s1 < <(cpu_ticks "${CPU_PID[$t]}")
      if [ "$load" != "1" ]; then
        CPU_USER[$t]=$(( ${CPU_USER[$t]:-0} + u1 - u0 )); CPU_SYS[$t]=$(( ${CPU_SYS[$t]:-0} + s1 - s0 ))
        CPU_REQS[$t]=$(awk -v a="${CPU_REQS[$t]:-0}" -v r="$rps" -v d="$DURATION" 'BEGIN { printf "%.0f", a + r * d }')
      fi
      if [ "$bad" != "0" ]; then echo "warning: $t answered $bad non-2xx responses" >&2; fi
      RPS[$t,$load]+="$rps "; P50[$t,$load]+="$p50 "; P99[$t,$load]+="$p99 "
      printf '  round %s  %-8s c=%-3s %10.0f req/s  p50 %7.0f us  p99 %7.0f us\n' "$round" "$t" "$load" "$rps" "$p50" "$p99" >&2
    done
  done
done


echo
echo "## Legacy lane: $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m), path $REQ_PATH, median of $ROUNDS rounds x ${DURATION}s"
echo
echo "| target | conns | req/s | p50 µs | p99 µs |"
echo "|---|---|---|---|---|"
declare -A M_RPS M_P50 M_P99
for load in 1 "$CONNS"; do
  for t in "${targets[@]}"; do
    M_RPS[$t,$load]=$(echo "${RPS[$t,$load]}" | median)
    M_P50[$t,$load]=$(echo "${P50[$t,$load]}" | median)
    M_P99[$t,$load]=$(echo "${P99[$t,$load]}" | median)
    printf '| %s | %s | %.0f | %.0f | %.0f |\n' "$t" "$load" "${M_RPS[$t,$load]}" "${M_P50[$t,$load]}" "${M_P99[$t,$load]}"
  done
done
echo
for load in 1 "$CONNS"; do
  awk -v l="$load" -v td="${M_RPS[turnout,$load]}" -v dd="${M_RPS[direct,$load]}" -v nn="${M_RPS[nginx,$load]}" \
      -v tp="${M_P50[turnout,$load]}" -v dp="${M_P50[direct,$load]}" -v np="${M_P50[nginx,$load]}" 'BEGIN {
    printf "c=%s: Turnout/direct req/s = %.2fx, Turnout/nginx req/s = %.2fx; p50 added over direct: Turnout %+.0f us, nginx %+.0f us\n", l, td/dd, td/nn, tp-dp, np-dp }'
done

echo
echo "CPU per request at c=$CONNS (the measured process only: the CRM for direct, the nginx worker, Turnout):"
for t in "${targets[@]}"; do
  awk -v t="$t" -v u="${CPU_USER[$t]}" -v s="${CPU_SYS[$t]}" -v n="${CPU_REQS[$t]}" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    printf "  %-8s user %5.1f us  sys %5.1f us\n", t, u / hz * 1e6 / n, s / hz * 1e6 / n }'
done
