#!/usr/bin/env bash
# Macro benchmark: tessera, nginx and HAProxy terminating TLS in front of the same backend, with
# 1 and then 2 workers, driven by wrk with keep-alive and with "Connection: close" (every request
# a new TLS connection, which wrk resumes), and "full": "close" with resumption off everywhere.
# Then, for tessera alone with 1 worker, "plugins": keep-alive with the jwt and session_binding
# plugins on the route (every request carries the same valid token, so after the first request
# the jwt plugin's verified-token cache answers) against the same tessera without plugins.
#
# Usage (from the repo root): bash bench/macro.sh BUILD_DIR
#   DURATION=10      seconds per wrk run (default 10)
#   CONNECTIONS=50   wrk connections (default 50)
#   RESULTS_FILE=f   also append the table, with its header, to f
#   PLUGIN_ROUNDS=1  plugins off/on pairs, alternated; the report gives each and their mean
#   ONLY=plugins     skip the comparison with nginx and HAProxy (the plugin rounds alone)
#
# Needs: wrk, nginx, haproxy, curl, openssl, ss, pgrep (`make bench` installs them).
#
# Fairness notes:
# - All three proxies use the same ECDSA P-256 certificate, TLS 1.2-1.3, the same TLS 1.2 cipher
#   list as tessera, keep up to 64 idle upstream connections, and add the same X-Forwarded-*
#   headers, so the backend echoes heads of about the same size through each of them.
# - wrk (Debian's 4.1.0, linked against the system OpenSSL 3) closes a connection with
#   SSL_shutdown + SSL_clear and reuses the same SSL object for the next connect. SSL_clear keeps
#   the session of a cleanly shut down connection, so wrk offers that session (a TLS 1.3 ticket) on
#   reconnect: the "close" runs measure mostly *resumed* handshakes, not full ones. tessera's
#   resumed/full handshake counts for each close run are printed under the table. This is still a
#   like-for-like comparison because every proxy faces the same client and resumes: tessera uses
#   OpenSSL's defaults (internal session cache + stateless tickets), nginx is configured with
#   `ssl_session_cache shared:SSL:10m; ssl_session_tickets on;`, and HAProxy's defaults are a
#   shared session cache (tune.ssl.cachesize 20000) plus tickets with per-process random keys.
# - nginx closes a client keep-alive connection after 1000 requests by default (and an upstream
#   one likewise); tessera and HAProxy do not. keepalive_requests is raised so that the keep-alive
#   runs do not turn partly into handshake runs for nginx alone.
# - On a 2-core machine wrk, the backend and the proxy share the cores: absolute numbers are low,
#   the 2-worker rows measure contention as much as scaling, and a req/s ratio is diluted by the
#   CPU that wrk and the backend take. So the table also gives the proxy's own CPU time per
#   request (utime+stime of all its threads and processes over the run, divided by the requests
#   wrk completed), which does not depend on who else shares the cores: read that one first.

set -euo pipefail

readonly SCRIPT_NAME=macro.sh
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

readonly DURATION="${DURATION:-10}"
readonly PLUGIN_ROUNDS="${PLUGIN_ROUNDS:-1}"
readonly ONLY="${ONLY:-}"
readonly CONNECTIONS="${CONNECTIONS:-50}"
readonly WARMUP_SECONDS=1
readonly STARTUP_TIMEOUT=10  # seconds a process gets to start listening

TMP=""
RESUMPTION=true  # false in the "full" mode: see nginx_session_lines
PLUGINS=false    # true: tessera's route runs jwt + session_binding (see write_tessera_conf)
TOKEN=""         # the bearer token of the plugin runs (make_token)
PIDS=()        # every process this script started and has not stopped yet
USED_PORTS=()  # ports handed out by alloc_port, not necessarily bound yet
NOTES=()       # lines printed under the table

# check_answers NAME URL LOGFILE [curl args...]: one request must get a 200, else the run stops.
check_answers() {
  local name=$1 url=$2 logfile=$3 code
  shift 3
  code=$(curl -sk --max-time 5 -o /dev/null -w '%{http_code}' "$@" "$url" || true)
  if [[ "$code" != 200 ]]; then
    log "$name output:"
    sed 's/^/    /' "$logfile" >&2
    die "$name answered '$code' instead of 200 on $url"
  fi
}

# make_token: an ES256 issuer key pair in TMP and one token from it, valid for longer than any
# run, in TOKEN. Made with tessera's own tool, as an auth center would.
make_token() {
  "$BUILD_DIR/tessera" token keygen --type ec --out "$TMP/auth.jwk" \
    --public "$TMP/auth.jwks.json" >/dev/null || die "tessera token keygen failed"
  TOKEN=$("$BUILD_DIR/tessera" token issue --issuer https://auth.bench --audience bench \
    --sign-key "$TMP/auth.jwk" --claims '{"sub":"bench-user"}' --ttl 3600s) ||
    die "tessera token issue failed"
  [[ "$TOKEN" =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]] ||
    die "tessera token issue printed '$TOKEN', not a JWS"
}

# tessera_plugin_lines: with PLUGINS=true, the plugins: section (docs/config.md, "type: jwt" and
# "type: session_binding"). No encrypted claims, so no decrypt_keys.
tessera_plugin_lines() {
  [[ "$PLUGINS" == true ]] || return 0
  cat <<EOF
plugins:
  bench_jwt:
    type: jwt
    issuers:
      - issuer: https://auth.bench
        audiences: [bench]
        keys: $TMP/auth.jwks.json
        algorithms: [ES256]
    claims_to_headers: { sub: X-User-Id }
  bench_binding: { type: session_binding, cookies: [SESSIONID] }
EOF
}

# tessera_route_lines: with PLUGINS=true, the listener's one route runs both plugins; otherwise
# the listener gets its implicit route to the one upstream.
tessera_route_lines() {
  [[ "$PLUGINS" == true ]] || return 0
  echo "    routes:"
  echo "      - { upstream: app, plugins: [bench_jwt, bench_binding] }"
}

# --- Proxy configurations ---------------------------------------------------------------------

# write_tessera_conf WORKERS PORT ADMIN_PORT FILE
write_tessera_conf() {
  cat >"$4" <<EOF
workers: $1
$(tessera_plugin_lines)
listeners:
  - name: bench
    listen: 127.0.0.1:$2
    tls:
      certificates:
        - cert: $TMP/cert.pem
          key: $TMP/key.pem
      min_version: "1.2"
      session_resumption: $RESUMPTION
$(tessera_route_lines)
upstreams:
  app:
    servers: [127.0.0.1:$BACKEND_PORT]
    keepalive: 64
limits:
  drain_timeout: 1s
admin:
  listen: 127.0.0.1:$3
log:
  level: warn
  access_log: off
EOF
}

# The "full" mode turns session resumption off in every proxy, so that each wrk reconnect is a
# full handshake even though wrk offers its previous session.
nginx_session_lines() {
  if [[ "$RESUMPTION" == true ]]; then
    echo "ssl_session_cache shared:SSL:10m; ssl_session_tickets on;"
  else
    echo "ssl_session_cache off; ssl_session_tickets off;"
  fi
}

# write_nginx_conf WORKERS PORT FILE
write_nginx_conf() {
  local user_line=""
  # nginx drops privileges to "nobody" when started as root; staying root keeps the temp dir
  # readable without chown.
  [[ "$(id -u)" == 0 ]] && user_line="user root;"
  cat >"$3" <<EOF
$user_line
worker_processes $1;
daemon off;
master_process on;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  keepalive_requests 1000000;
  upstream backend {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$2 ssl;
    ssl_certificate $TMP/cert.pem;
    ssl_certificate_key $TMP/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers $TLS12_CIPHERS;
    ssl_prefer_server_ciphers on;
    $(nginx_session_lines)
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
    }
  }
}
EOF
}

# write_haproxy_conf WORKERS PORT FILE
write_haproxy_conf() {
  cat >"$3" <<EOF
global
  nbthread $1
  maxconn 4096
  ssl-default-bind-options ssl-min-ver TLSv1.2
  ssl-default-bind-ciphers $TLS12_CIPHERS
$( [[ "$RESUMPTION" == true ]] || echo "  tune.ssl.cachesize 0" )
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 30s
  timeout http-keep-alive 60s
  http-reuse always
  option forwardfor
frontend bench
  bind 127.0.0.1:$2 ssl crt $TMP/combined.pem alpn http/1.1$( [[ "$RESUMPTION" == true ]] || echo " no-tls-tickets" )
  http-request set-header X-Forwarded-Proto https
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  default_backend app
backend app
  server app1 127.0.0.1:$BACKEND_PORT
EOF
}

# start_proxy NAME WORKERS PORT: starts it, checks it answers; sets PROXY_PID (and ADMIN_PORT).
start_proxy() {
  local name=$1 workers=$2 port=$3 conf logfile="$TMP/$1-w$2.log"
  case "$name" in
    tessera)
      alloc_port ADMIN_PORT
      conf="$TMP/tessera-w$workers.yaml"
      write_tessera_conf "$workers" "$port" "$ADMIN_PORT" "$conf"
      start tessera "$logfile" "$BUILD_DIR/tessera" run --config "$conf"
      ;;
    nginx)
      conf="$TMP/nginx-w$workers.conf"
      mkdir -p "$TMP/nginx"
      write_nginx_conf "$workers" "$port" "$conf"
      start nginx "$logfile" nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$conf"
      ;;
    haproxy)
      conf="$TMP/haproxy-w$workers.cfg"
      write_haproxy_conf "$workers" "$port" "$conf"
      start haproxy "$logfile" haproxy -db -f "$conf"
      ;;
  esac
  PROXY_PID=$STARTED_PID
  wait_listening "$name" "$PROXY_PID" "$port" "$logfile" || die "$name did not start"
  # The jwt plugin answers 401 without the token; with it, the 200 also proves the token verifies.
  check_answers "$name" "https://127.0.0.1:$port/" "$logfile" -H "Authorization: Bearer $TOKEN"
}

# --- wrk ----------------------------------------------------------------------------------------

# run_wrk OUTFILE SECONDS URL [wrk args...]: fails the run if wrk fails. wrk runs in the
# background so that a signal to this script runs the cleanup at once instead of after wrk ends.
run_wrk() {
  local out=$1 secs=$2 url=$3 pid
  shift 3
  wrk -t1 -c"$CONNECTIONS" -d"${secs}s" --latency "$@" "$url" >"$out" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  if ! wait "$pid"; then
    forget_pid "$pid"
    sed 's/^/    /' "$out" >&2
    die "wrk failed against $url"
  fi
  forget_pid "$pid"
}

# parse_wrk FILE: sets RPS, P50, P99, REQUESTS (completed in the run) and ERRORS (non-2xx/3xx
# responses + socket errors, or "").
parse_wrk() {
  local f=$1
  RPS=$(awk '/^Requests\/sec:/ {print $2}' "$f")
  P50=$(awk '$1 == "50%" {print $2}' "$f")
  P99=$(awk '$1 == "99%" {print $2}' "$f")
  REQUESTS=$(awk '$2 == "requests" && $3 == "in" {print $1}' "$f")
  [[ -n "$RPS" && -n "$P50" && -n "$P99" && "$REQUESTS" =~ ^[0-9]+$ ]] || {
    sed 's/^/    /' "$f" >&2
    die "could not read wrk's output in $f"
  }
  ERRORS=$(grep -E '^ *(Non-2xx or 3xx responses|Socket errors):' "$f" | sed 's/^ *//' |
    paste -sd ';' - || true)
}

# record_run KEY FILE CPU_TICKS: wrk's results in FILE (parse_wrk) and the proxy's CPU time per
# completed request, in microseconds ("" if wrk completed none), into RESULT_* under KEY.
record_run() {
  parse_wrk "$2"
  RESULT_CPU["$1"]=$(awk -v t="$3" -v hz="$CLK_TCK" -v n="$REQUESTS" \
    'BEGIN {if (n > 0) printf "%.1f", t * 1e6 / hz / n}')
  RESULT_RPS["$1"]=$RPS
  RESULT_P50["$1"]=$P50
  RESULT_P99["$1"]=$P99
}

# handshake_counts PORT: "full=N resumed=M" from tessera's admin endpoint.
handshake_counts() {
  curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
    awk -F'[{}" ]+' '/^tessera_tls_handshakes_total/ {v[$3] = $NF}
      END {printf "%d %d\n", v["full"], v["resumed"]}'
}

# tessera_summary PORT: tessera's counters that reveal trouble (non-2xx answers, failed
# handshakes, upstream connections not being reused), on one line.
tessera_summary() {
  curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
    awk '/^tessera_(requests_total|tls_handshake_errors_total|bad_requests_total|upstream_)/ {
        sub(/^tessera_/, "", $1); out = out sep $1 "=" $2; sep = ", "}
      END {print out}'
}

# bench_proxy NAME WORKERS: starts the proxy, runs both modes against it, records the results in
# RESULT_* (keyed "workers/mode/proxy"), stops it.
bench_proxy() {
  local name=$1 workers=$2 port url mode out before after bf br af ar note cpu0 cpu1
  alloc_port port
  url="https://127.0.0.1:$port/"
  RESUMPTION=true
  start_proxy "$name" "$workers" "$port"
  log "$name, $workers worker(s): warm-up ${WARMUP_SECONDS}s"
  run_wrk "$TMP/warmup.txt" "$WARMUP_SECONDS" "$url"
  for mode in keepalive close full; do
    if [[ "$mode" == full ]]; then  # same proxy, restarted with session resumption off
      stop_pid "$PROXY_PID"
      RESUMPTION=false
      start_proxy "$name" "$workers" "$port"
    fi
    out="$TMP/wrk-$name-w$workers-$mode.txt"
    log "$name, $workers worker(s), $mode: ${DURATION}s"
    if [[ "$name" == tessera ]]; then before=$(handshake_counts "$ADMIN_PORT" || true); fi
    cpu0=$(cpu_ticks "$PROXY_PID")
    if [[ "$mode" == keepalive ]]; then
      run_wrk "$out" "$DURATION" "$url"
    else
      run_wrk "$out" "$DURATION" "$url" -H "Connection: close"
    fi
    cpu1=$(cpu_ticks "$PROXY_PID")
    record_run "$workers/$mode/$name" "$out" $((cpu1 - cpu0))
    if [[ -n "$ERRORS" ]]; then NOTES+=("- $name, $workers worker(s), $mode: $ERRORS"); fi
    if [[ "$name" == tessera && "$mode" != keepalive ]]; then
      after=$(handshake_counts "$ADMIN_PORT" || true)
      read -r bf br <<<"$before"
      read -r af ar <<<"$after"
      note="- tessera, $workers worker(s), $mode: TLS handshakes full=$((af - bf))"
      NOTES+=("$note resumed=$((ar - br))")
    fi
  done
  if [[ "$name" == tessera ]]; then
    note=$(tessera_summary "$ADMIN_PORT" || true)
    NOTES+=("- tessera, $workers worker(s), counters after all runs: $note")
  fi
  stop_pid "$PROXY_PID"
}

# bench_plugins: tessera with 1 worker, keep-alive, plugins off and then on, each run on a freshly
# started tessera. Both runs send the same Authorization header, so that they differ only in
# what tessera does with it. Results go to RESULT_* under "1/plugins-off/tessera" and
# "1/plugins-on/tessera".
bench_plugins() {
  local port url state out cpu0 cpu1 note round key
  alloc_port port
  url="https://127.0.0.1:$port/"
  RESUMPTION=true
  for ((round = 1; round <= PLUGIN_ROUNDS; round++)); do
    for state in off on; do
      PLUGINS=false
      [[ "$state" == on ]] && PLUGINS=true
      key="1/plugins-$state/tessera/$round"
      start_proxy tessera 1 "$port"
      log "tessera, 1 worker, keep-alive, plugins $state (round $round): warm-up ${WARMUP_SECONDS}s"
      # The warm-up also fills the jwt plugin's verified-token cache.
      run_wrk "$TMP/warmup.txt" "$WARMUP_SECONDS" "$url" -H "Authorization: Bearer $TOKEN"
      out="$TMP/wrk-tessera-w1-plugins-$state-$round.txt"
      log "tessera, 1 worker, keep-alive, plugins $state (round $round): ${DURATION}s"
      cpu0=$(cpu_ticks "$PROXY_PID")
      run_wrk "$out" "$DURATION" "$url" -H "Authorization: Bearer $TOKEN"
      cpu1=$(cpu_ticks "$PROXY_PID")
      record_run "$key" "$out" $((cpu1 - cpu0))
      if [[ -n "$ERRORS" ]]; then NOTES+=("- tessera, 1 worker, plugins $state: $ERRORS"); fi
      note=$(tessera_summary "$ADMIN_PORT" || true)
      NOTES+=("- tessera, 1 worker, plugins $state (round $round), counters: $note")
      stop_pid "$PROXY_PID"
    done
  done
  PLUGINS=false
}

# plugins_report: the plugin rows and the target line, under the main table.
plugins_report() {
  local round off on ratio cpu_off cpu_on cpu_ratio verdict sum=0 mean
  echo "Plugins: tessera alone, wrk keep-alive with -H 'Authorization: Bearer <valid ES256 token>';"
  echo "\"keepalive+plugins\" runs jwt (verified-token cache warm) + session_binding (no SESSIONID"
  echo "cookie sent, so no store lookup). The ratio columns are plugins on / off (CPU: off / on);"
  echo "off and on alternate, $PLUGIN_ROUNDS round(s)."
  echo
  echo "| round | mode | proxy | req/s | p50 | p99 | ratio on / off (req/s) | CPU µs/req |" \
    "CPU off / on |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for ((round = 1; round <= PLUGIN_ROUNDS; round++)); do
    off=${RESULT_RPS["1/plugins-off/tessera/$round"]}
    on=${RESULT_RPS["1/plugins-on/tessera/$round"]}
    cpu_off=${RESULT_CPU["1/plugins-off/tessera/$round"]}
    cpu_on=${RESULT_CPU["1/plugins-on/tessera/$round"]}
    ratio=$(awk -v a="$on" -v b="$off" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
    cpu_ratio=$(awk -v a="$cpu_on" -v b="$cpu_off" \
      'BEGIN {if (a > 0 && b > 0) printf "%.2f", b / a; else printf "n/a"}')
    sum=$(awk -v s="$sum" -v r="$ratio" 'BEGIN {printf "%.4f", s + r}')
    echo "| $round | keepalive | tessera | $off | ${RESULT_P50["1/plugins-off/tessera/$round"]} |" \
      "${RESULT_P99["1/plugins-off/tessera/$round"]} | 1.00 | ${cpu_off:-n/a} | 1.00 |"
    echo "| $round | keepalive+plugins | tessera | $on |" \
      "${RESULT_P50["1/plugins-on/tessera/$round"]} | ${RESULT_P99["1/plugins-on/tessera/$round"]} |" \
      "$ratio | ${cpu_on:-n/a} | $cpu_ratio |"
  done
  mean=$(awk -v s="$sum" -v n="$PLUGIN_ROUNDS" 'BEGIN {printf "%.2f", s / n}')
  verdict=$(awk -v r="$mean" 'BEGIN {print (r >= 0.9 ? "met" : "NOT met")}')
  echo
  echo "Target: plugins on / off >= 0.9 (req/s), mean of $PLUGIN_ROUNDS round(s): $mean, $verdict."
}

versions() {
  local nginx_v haproxy_v openssl_v wrk_v tessera_v
  nginx_v=$(nginx -v 2>&1 | sed 's/^nginx version: //')
  haproxy_v=$(haproxy -v | head -1 | awk '{print $3}')
  openssl_v=$(openssl version)
  wrk_v=$(wrk -v 2>&1 | head -1 | awk '{print $2}' || true)
  tessera_v=$("$BUILD_DIR/tessera" version 2>&1 | head -1 || true)
  echo "$tessera_v, $nginx_v, HAProxy $haproxy_v, $openssl_v, wrk $wrk_v"
}

report() {
  local header table w mode name rps ratio base cpu cpu_ratio cpu_base
  header="### Macro benchmark, $(date -u), nproc=$(nproc)"$'\n\n'
  header+="$(versions)."$'\n'
  header+="wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency; \"close\" adds -H 'Connection: close'"
  header+=" (wrk resumes its TLS session on reconnect); \"full\" is \"close\" with session"
  header+=" resumption turned off in every proxy, so each request is a full handshake."$'\n'
  header+="CPU µs/req is the proxy's own CPU time (user+system, all its threads and processes;"
  header+=" not wrk's or the backend's) per completed request, and CPU vs nginx is nginx's CPU/req"
  header+=" over the proxy's (>1: the proxy is cheaper); on this shared $(nproc)-core machine that is"
  header+=" the number to read, because req/s and its ratio are bounded by wrk and the backend"
  header+=" sharing the cores."
  table="| workers | mode | proxy | req/s | p50 | p99 | ratio to nginx (req/s) | CPU µs/req |"
  table+=" CPU vs nginx |"$'\n'
  table+="|---|---|---|---|---|---|---|---|---|"
  local workers_run=(1 2)
  [[ "$ONLY" == plugins ]] && workers_run=()
  for w in "${workers_run[@]}"; do
    for mode in keepalive close full; do
      base=${RESULT_RPS["$w/$mode/nginx"]}
      cpu_base=${RESULT_CPU["$w/$mode/nginx"]}
      for name in tessera nginx haproxy; do
        rps=${RESULT_RPS["$w/$mode/$name"]}
        ratio=$(awk -v a="$rps" -v b="$base" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
        cpu=${RESULT_CPU["$w/$mode/$name"]}
        cpu_ratio=$(awk -v a="$cpu" -v b="$cpu_base" \
          'BEGIN {if (a > 0 && b > 0) printf "%.2f", b / a; else printf "n/a"}')
        table+=$'\n'"| $w | $mode | $name | $rps | ${RESULT_P50["$w/$mode/$name"]} |"
        table+=" ${RESULT_P99["$w/$mode/$name"]} | $ratio | ${cpu:-n/a} | $cpu_ratio |"
      done
    done
  done
  local text="$header"$'\n\n'
  [[ "$ONLY" == plugins ]] || text+="$table"$'\n\n'
  text+="$(plugins_report)"$'\n'
  if ((${#NOTES[@]} > 0)); then
    text+=$'\n'"$(printf '%s\n' "${NOTES[@]}")"$'\n'
  fi
  echo
  echo "$text"
  if [[ -n "${RESULTS_FILE:-}" ]]; then
    printf '\n%s' "$text" >>"$RESULTS_FILE"
    log "appended to $RESULTS_FILE"
  fi
}

main() {
  (($# == 1)) || die "usage: bash bench/macro.sh BUILD_DIR"
  BUILD_DIR=$1
  [[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a whole number of seconds"
  [[ "$CONNECTIONS" =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a whole number"
  [[ "$PLUGIN_ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "PLUGIN_ROUNDS must be a whole number"
  [[ -z "$ONLY" || "$ONLY" == plugins ]] || die "ONLY may only be plugins"
  local tool
  for tool in wrk nginx haproxy curl openssl ss awk pgrep getconf; do
    command -v "$tool" >/dev/null || die "$tool is not installed (make bench installs it)"
  done
  for tool in tessera tessera-demo-backend; do
    [[ -x "$BUILD_DIR/$tool" ]] || die "$BUILD_DIR/$tool not found: build first"
  done

  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  TMP=$(mktemp -d -t tessera-macro.XXXXXX)
  make_cert
  cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/combined.pem"  # HAProxy wants both in one file
  make_token

  CLK_TCK=$(getconf CLK_TCK)
  [[ "$CLK_TCK" =~ ^[1-9][0-9]*$ ]] || die "getconf CLK_TCK gave '$CLK_TCK'"
  declare -gA RESULT_RPS=() RESULT_P50=() RESULT_P99=() RESULT_CPU=()
  alloc_port BACKEND_PORT
  start_backend

  local workers name
  if [[ "$ONLY" != plugins ]]; then
    for workers in 1 2; do
      for name in tessera nginx haproxy; do
        bench_proxy "$name" "$workers"
      done
    done
  fi
  bench_plugins
  report
}

main "$@"
