# Shared helpers for the benchmark scripts (sourced, not run).

wait_port() {
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 never opened" >&2; return 1
}

# measure PORT CONNS [extra wrk args...] → "rps p50_us p99_us non2xx"
measure() {
  local port=$1 conns=$2; shift 2
  wrk -t1 -c"$conns" -d"${DURATION}s" --latency -H 'Authorization: Bearer demo' "$@" "http://127.0.0.1:$port$REQ_PATH" | awk '
    function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return (v+0)*1000; if (v ~ /s$/) return (v+0)*1000000; return v }
    /Requests\/sec/ { rps=$2 }
    /^ +50%/ { p50=us($2) }
    /^ +99%/ { p99=us($2) }
    /Non-2xx/ { bad=$NF }
    END { printf "%s %s %s %s\n", rps, p50, p99, (bad==""?0:bad) }'
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# cpu_ticks PID → "user sys" clock ticks consumed so far by the process.
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }

# write_nginx_conf DIR HTTP_BODY: an nginx.conf in DIR for a single-worker,
# foreground nginx whose state lives in DIR; HTTP_BODY goes inside http {}.
write_nginx_conf() {
  local dir=$1 body=$2
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
$body
}
NGINX
}
