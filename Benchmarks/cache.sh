#!/usr/bin/env bash
# Cache hits: Turnout's optimized lane with the message-cache plugin vs nginx
# proxy_cache vs Varnish, the same request (GET /api/messages/1 with a bearer
# token, cached per token), interleaved round by round. Then, with a demo CRM
# that takes 20 ms per API call, Turnout's cache-hit p50 vs its legacy-lane
# p50 (what a cache saves a client).
#
#   BENCH_DURATION=8 BENCH_ROUNDS=3 BENCH_CONNECTIONS=32 Benchmarks/cache.sh
set -euo pipefail
# Ports below the ephemeral range (32768+), so no outgoing connection holds them.
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
DURATION=${BENCH_DURATION:-8}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-32}
CRM_PORT=18120; NGINX_PORT=18121; VARNISH_PORT=18122; TURNOUT_PORT=18123
SLOW_CRM_PORT=18124; SLOW_TURNOUT_PORT=18125
REQ_PATH=/api/messages/1
WORK=$(mktemp -d /tmp/turnout-bench.XXXXXX)
chmod 755 "$WORK"  # nginx workers run as nobody
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
. Benchmarks/lib.sh

turnout_conf() {  # PORT UPSTREAM_PORT
  cat <<CONF
[server]
listen = "127.0.0.1:$1"
[upstream]
url = "http://127.0.0.1:$2"
[rollout]
percent = 0
[[plugin]]
name = "message-cache"
path = "$PWD/$BIN/libTurnoutMessageCache.so"
routes = ["GET /api/messages", "GET /api/messages/*", "POST /api/messages", "PUT /api/messages/*"]
CONF
}

"$BIN/demo-crm" --port "$CRM_PORT" --seed 100 >"$WORK/crm.log" 2>&1 & PIDS+=($!)
wait_port "$CRM_PORT"
turnout_conf "$TURNOUT_PORT" "$CRM_PORT" >"$WORK/proxy.conf"
"$BIN/turnout" --config "$WORK/proxy.conf" >"$WORK/turnout.log" 2>&1 & PIDS+=($!)
wait_port "$TURNOUT_PORT"

write_nginx_conf "$WORK/nginx" "
  proxy_cache_path $WORK/nginx/cache keys_zone=crm:10m;
  upstream crm { server 127.0.0.1:$CRM_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://crm;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_cache crm;
      proxy_cache_key \"\$http_authorization|\$request_uri\";
      proxy_cache_valid 200 10m;
      add_header X-Cache \$upstream_cache_status;
    }
  }
"
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >"$WORK/nginx.log" 2>&1 & PIDS+=($!)
wait_port "$NGINX_PORT"

cat >"$WORK/default.vcl" <<VCL
vcl 4.1;
backend crm { .host = "127.0.0.1"; .port = "$CRM_PORT"; }
sub vcl_recv { return (hash); }                      # cache despite Authorization...
sub vcl_hash { hash_data(req.http.Authorization); }  # ...per caller
sub vcl_backend_response { set beresp.ttl = 10m; }
sub vcl_deliver { if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; } }
VCL
varnishd -F -j none -a "127.0.0.1:$VARNISH_PORT" -f "$WORK/default.vcl" -s malloc,64m -n "$WORK/varnish" >"$WORK/varnish.log" 2>&1 & PIDS+=($!)
wait_port "$VARNISH_PORT"

# Warm all three and check each really answers from its cache.
for port in $TURNOUT_PORT $NGINX_PORT $VARNISH_PORT; do
  for _ in 1 2; do curl -s -o /dev/null -H 'Authorization: Bearer demo' -H 'X-Turnout-Lane: optimized' "http://127.0.0.1:$port$REQ_PATH"; done
  curl -s -D - -o /dev/null -H 'Authorization: Bearer demo' -H 'X-Turnout-Lane: optimized' "http://127.0.0.1:$port$REQ_PATH" | grep -qi '^x-cache: HIT' \
    || { echo "port $port does not answer from its cache" >&2; exit 1; }
done

declare -A RPS P50 P99
targets=(turnout nginx varnish)
declare -A PORT=([turnout]=$TURNOUT_PORT [nginx]=$NGINX_PORT [varnish]=$VARNISH_PORT)
for t in "${targets[@]}"; do RPS[$t]=""; P50[$t]=""; P99[$t]=""; done
for round in $(seq "$ROUNDS"); do
  for t in "${targets[@]}"; do
    read -r rps p50 p99 bad < <(measure "${PORT[$t]}" "$CONNS" -H 'X-Turnout-Lane: optimized')
    if [ "$bad" != "0" ]; then echo "warning: $t answered $bad non-2xx responses" >&2; fi
    RPS[$t]+="$rps "; P50[$t]+="$p50 "; P99[$t]+="$p99 "
    printf '  round %s  %-8s c=%-3s %10.0f req/s  p50 %7.0f us  p99 %7.0f us\n' "$round" "$t" "$CONNS" "$rps" "$p50" "$p99" >&2
  done
done

# Hit vs legacy with a 20 ms legacy API, 1 connection.
"$BIN/demo-crm" --port "$SLOW_CRM_PORT" --seed 100 --latency-ms 20 >"$WORK/slow-crm.log" 2>&1 & PIDS+=($!)
wait_port "$SLOW_CRM_PORT"
turnout_conf "$SLOW_TURNOUT_PORT" "$SLOW_CRM_PORT" >"$WORK/slow.conf"
"$BIN/turnout" --config "$WORK/slow.conf" >"$WORK/slow-turnout.log" 2>&1 & PIDS+=($!)
wait_port "$SLOW_TURNOUT_PORT"
curl -s -o /dev/null -H 'Authorization: Bearer demo' -H 'X-Turnout-Lane: optimized' "http://127.0.0.1:$SLOW_TURNOUT_PORT$REQ_PATH"
read -r hit_rps hit_p50 hit_p99 _ < <(measure "$SLOW_TURNOUT_PORT" 1 -H 'X-Turnout-Lane: optimized')
read -r leg_rps leg_p50 leg_p99 _ < <(measure "$SLOW_TURNOUT_PORT" 1 -H 'X-Turnout-Lane: legacy')

echo
echo "## Cache hits: $(date -u +%Y-%m-%d), $(nproc) cores, path $REQ_PATH, c=$CONNS, median of $ROUNDS rounds x ${DURATION}s"
echo
echo "| cache | req/s | p50 µs | p99 µs |"
echo "|---|---|---|---|"
declare -A M
for t in "${targets[@]}"; do
  M[$t]=$(echo "${RPS[$t]}" | median)
  printf '| %s | %.0f | %.0f | %.0f |\n' "$t" "${M[$t]}" "$(echo "${P50[$t]}" | median)" "$(echo "${P99[$t]}" | median)"
done
echo
awk -v t="${M[turnout]}" -v n="${M[nginx]}" -v v="${M[varnish]}" 'BEGIN { printf "Turnout hits / varnish hits = %.2fx; Turnout hits / nginx proxy_cache hits = %.2fx\n", t/v, t/n }'
awk -v h="$hit_p50" -v l="$leg_p50" 'BEGIN { printf "With a 20 ms legacy API (c=1): hit p50 %.0f us vs legacy p50 %.0f us: %.1f %% less\n", h, l, (1 - h/l) * 100 }'
