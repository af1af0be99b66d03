#!/usr/bin/env bash
# Session macro benchmark: TLS handshakes per second when clients resume their sessions, through
# tessera's cluster session cache (3 nodes, a 3-node memcached ring, every resumption on a node
# other than the one that made the session), tessera's in-process memory store, nginx's local
# shared cache and h2o's memcached cache; TLS 1.2 and 1.3; plus a full-handshake baseline per
# server. Driven by tessera-handshake-load (wrk cannot resume on purpose nor change nodes).
#
# Usage (from the repo root): bash bench/sessions.sh BUILD_DIR
#   DURATION=10      seconds per load run (default 10)
#   CONNECTIONS=32   connections the load tool keeps in flight (default 32)
#   THREADS=1        load tool threads (default 1)
#   PACED_SHARE=0.5  the "resume, paced" rows start connections at this share of the memory
#                    store's resumed handshakes/s (measured first in the same run)
#   BACKEND=demo     use tessera-demo-backend instead of a one-worker nginx answering 200
#   ONLY="nginx h2o" run only these rows (of: memory ring ring-nol1 ring-x1 nginx h2o h2o-x3); the
#                    targets need memory, ring and nginx
#   RESULTS_FILE=f   also append the table, with its header, to f
#
# Needs: nginx, memcached, curl, openssl, ss, pgrep, and optionally h2o (`make bench` installs
# them), and BUILD_DIR/{tessera,tessera-demo-backend,tessera-handshake-load}.
#
# What is compared:
# - "tessera memory x1": one tessera, 1 worker, session_cache at its defaults (memory store).
# - "tessera ring x3": three tessera processes (1 worker each), same cluster name, listener name
#   and seal key, session_cache.store memcached over 3 memcached processes, replicas 1. The load
#   tool gets the 3 addresses and sends each connection to the next one, so every resumption is
#   cross-node. Each node keeps its per-worker L1 (the default, l1_entries 20000).
# - "tessera ring x3, L1 off": the same with l1_entries 0. With TLS 1.2 a resumed session keeps
#   its id, so after one round over the nodes the L1s answer nearly every lookup; this row makes
#   every lookup go to the ring. (TLS 1.3 issues a new ticket per resumption, so each lookup
#   there reaches the ring with or without L1.)
# - "tessera ring x1, L1 off": one tessera process on the same ring with l1_entries 0, so every
#   resumption is a ring lookup, as in the row above, but with one server process like the
#   memory and nginx rows. On a 2-core machine the x3 rows also pay for three server processes
#   taking turns on two cores; this row shows what the ring itself costs. Not cross-node, so it
#   is not one of the target rows.
# - "nginx shared cache": nginx, 1 worker, `ssl_session_cache shared:SSL:10m;
#   ssl_session_tickets off;`: sessions resumed from its own shared-memory cache.
# - "h2o memcached x1": h2o 2.2.5, 1 thread, `ssl-session-resumption: {mode: cache, cache-store:
#   memcached}` on one memcached (the first of the ring's three, idle by then). h2o keeps
#   OpenSSL's internal session cache in front of memcached, so a single node resumes from its
#   own memory and only writes to memcached (the memcached counters under the table show it).
# - "h2o memcached x3": three such h2o processes on the same memcached, the load tool moving
#   every connection to the next one as for tessera's ring: resumption has to go through
#   memcached.
# All servers proxy to the same backend with the same ECDSA P-256 certificate (made at run time)
# and the same TLS 1.2 cipher list. With TLS 1.3 the load tool sends one request per connection
# (the tickets come after the handshake) and reads the answer; with TLS 1.2 it closes right after
# the handshake. Handshake latency is TCP connect start -> handshake done at the client; in
# resume mode each connection slot's first (full) handshake is left out of latency and resumed %.
# With CONNECTIONS in flight a saturated server's p99 is mostly queueing (connections / rate), so
# tessera's memory store and ring and nginx are also measured with a single connection ("resume,
# c=1"): the latency the ring adds to one handshake, which is what the latency target is about.
# And at a fixed load below saturation ("resume, paced"): CONNECTIONS slots start connections on
# a schedule at PACED_SHARE of the memory store's resumed handshakes/s, the same rate for every
# server, and latency counts from when each connection was due (the load tool's --rate).
#
# On a small machine the load tool, the backend and the servers share the cores, and the 3-node
# rows run 3 server threads where the others run 1. So the table also gives the servers' own CPU
# time per handshake (user+system of every server process and thread, plus the memcached
# processes for the rows that use them), which does not depend on who else shares the cores.
# The notes under the table split tessera's CPU by thread (workers, store I/O threads, the rest)
# and give memcached's LRU maintainer thread apart, so that the cost of the ring shows where it
# is paid.

set -euo pipefail

readonly SCRIPT_NAME=sessions.sh
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

readonly DURATION="${DURATION:-10}"
readonly CONNECTIONS="${CONNECTIONS:-32}"
readonly THREADS="${THREADS:-1}"
readonly PACED_SHARE="${PACED_SHARE:-0.5}"
readonly STARTUP_TIMEOUT=10  # seconds a process gets to start listening
readonly CLUSTER_NODES=3
# Rows of the table, in order: the key used in RESULT_* and the label printed.
readonly SERVERS=(memory ring ring-nol1 ring-x1 nginx h2o h2o-x3)
declare -rA LABEL=([memory]="tessera memory x1" [ring]="tessera ring x3"
  [ring-nol1]="tessera ring x3, L1 off" [ring-x1]="tessera ring x1, L1 off"
  [nginx]="nginx shared cache" [h2o]="h2o memcached x1"
  [h2o-x3]="h2o memcached x3")

TMP=""
PIDS=()           # every process this script started and has not stopped yet
USED_PORTS=()     # ports handed out by alloc_port, not necessarily bound yet
NOTES=()          # lines printed under the table
MEMCACHED_PIDS=()
MEMCACHED_PORTS=()
SERVER_PIDS=()    # the processes of the server under test
SERVER_PORTS=()   # its TLS ports (one per node)
ADMIN_PORTS=()    # tessera's admin ports (one per node)
MC_PIDS=()        # the memcached processes the server under test uses
MC_PORTS=()

# answers URL: true if one request gets a 200.
answers() {
  [[ "$(curl -sk --max-time 5 -o /dev/null -w '%{http_code}' "$1" || true)" == 200 ]]
}

# Three memcached processes: tessera's ring, and the first of them for h2o.
start_memcached() {
  local i port user_args=()
  # memcached refuses to run as root without -u.
  [[ "$(id -u)" == 0 ]] && user_args=(-u root)
  for i in $(seq 1 "$CLUSTER_NODES"); do
    alloc_port port
    start "memcached $i" "$TMP/memcached-$i.log" \
      memcached -l 127.0.0.1 -p "$port" -U 0 -m 64 -t 1 "${user_args[@]}"
    wait_listening "memcached $i" "$STARTED_PID" "$port" "$TMP/memcached-$i.log" ||
      die "memcached did not start"
    MEMCACHED_PIDS+=("$STARTED_PID")
    MEMCACHED_PORTS+=("$port")
  done
}

# --- Server configurations --------------------------------------------------------------------

# write_tessera_conf KIND PORT ADMIN_PORT FILE: KIND is memory, ring, ring-nol1 or ring-x1.
write_tessera_conf() {
  local kind=$1 servers="" p
  for p in "${MEMCACHED_PORTS[@]}"; do servers+="${servers:+, }127.0.0.1:$p"; done
  {
    cat <<EOF
workers: 1
listeners:
  - name: bench
    listen: 127.0.0.1:$2
    tls:
      certificates:
        - cert: $TMP/cert.pem
          key: $TMP/key.pem
      min_version: "1.2"
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
cluster:
  name: bench-cluster
EOF
    if [[ "$kind" != memory ]]; then
      cat <<EOF
session_cache:
  store: memcached
  l1_entries: $([[ "$kind" == ring ]] && echo 20000 || echo 0)
  seal_keys:
    - { id: k1, file: $TMP/seal.key }
  memcached:
    servers: [$servers]
    replicas: 1
EOF
    fi
  } >"$4"
}

write_nginx_conf() {
  local port=$1 file=$2 user_line=""
  # nginx drops privileges to "nobody" when started as root; staying root keeps the temp dir
  # readable without chown.
  [[ "$(id -u)" == 0 ]] && user_line="user root;"
  cat >"$file" <<EOF
$user_line
worker_processes 1;
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
  upstream backend {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $TMP/cert.pem;
    ssl_certificate_key $TMP/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers $TLS12_CIPHERS;
    ssl_prefer_server_ciphers on;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets off;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
EOF
}

# h2o 2.2's keys (its docs, configure/base_directives "ssl-session-resumption"): mode cache uses
# only the session-id cache, which cache-store memcached keeps in memcached (binary protocol).
# write_h2o_conf PORT DIR: writes DIR/h2o.conf; logs and pid go to DIR too.
write_h2o_conf() {
  local port=$1 dir=$2 user_line=""
  # h2o switches to "nobody" when started as root unless told otherwise.
  [[ "$(id -u)" == 0 ]] && user_line="user: root"
  cat >"$dir/h2o.conf" <<EOF
$user_line
num-threads: 1
error-log: $dir/error.log
pid-file: $dir/h2o.pid
listen:
  host: 127.0.0.1
  port: $port
  ssl:
    certificate-file: $TMP/cert.pem
    key-file: $TMP/key.pem
    minimum-version: TLSv1.2
    cipher-suite: "$TLS12_CIPHERS"
    cipher-preference: server
    ocsp-update-interval: 0
ssl-session-resumption:
  mode: cache
  cache-store: memcached
  memcached:
    host: 127.0.0.1
    port: ${MEMCACHED_PORTS[0]}
hosts:
  default:
    paths:
      /:
        proxy.reverse.url: http://127.0.0.1:$BACKEND_PORT/
EOF
}

# start_server NAME: starts the server (all its nodes), checks every node answers; sets
# SERVER_PIDS, SERVER_PORTS, ADMIN_PORTS. Returns 1 (h2o only) if it cannot be made to work.
start_server() {
  local name=$1 nodes=1 i port admin conf logfile
  SERVER_PIDS=()
  SERVER_PORTS=()
  ADMIN_PORTS=()
  [[ "$name" == ring || "$name" == ring-nol1 || "$name" == *-x3 ]] && nodes=$CLUSTER_NODES
  for i in $(seq 1 "$nodes"); do
    alloc_port port
    logfile="$TMP/$name-$i.log"
    case "$name" in
      memory | ring | ring-nol1 | ring-x1)
        alloc_port admin
        conf="$TMP/tessera-$name-$i.yaml"
        write_tessera_conf "$name" "$port" "$admin" "$conf"
        start "tessera $name node $i" "$logfile" "$BUILD_DIR/tessera" run --config "$conf"
        ADMIN_PORTS+=("$admin")
        ;;
      nginx)
        mkdir -p "$TMP/nginx"
        write_nginx_conf "$port" "$TMP/nginx/nginx.conf"
        start nginx "$logfile" nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" \
          -c "$TMP/nginx/nginx.conf"
        ;;
      h2o*)
        mkdir -p "$TMP/$name/$i"
        write_h2o_conf "$port" "$TMP/$name/$i"
        start "$name node $i" "$logfile" h2o -c "$TMP/$name/$i/h2o.conf"
        ;;
    esac
    SERVER_PIDS+=("$STARTED_PID")
    SERVER_PORTS+=("$port")
    if ! wait_listening "$name" "$STARTED_PID" "$port" "$logfile"; then
      [[ "$name" == h2o* ]] && return 1
      die "$name did not start"
    fi
  done
  for port in "${SERVER_PORTS[@]}"; do
    if ! answers "https://127.0.0.1:$port/"; then
      log "$name on port $port does not answer 200; its output:"
      cat "$TMP/$name"-*.log "$TMP/$name"/*/error.log 2>/dev/null | tail -20 | sed 's/^/    /' >&2
      [[ "$name" == h2o* ]] && return 1
      die "$name does not answer 200 on https://127.0.0.1:$port/"
    fi
  done
}

stop_server() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do stop_pid "$pid"; done
  SERVER_PIDS=()
}

# --- Measurements -------------------------------------------------------------------------------

# metrics_snapshot FILE: tessera's counters summed over every node, one "name value" a line.
metrics_snapshot() {
  local port
  for port in "${ADMIN_PORTS[@]}"; do
    curl -s --max-time 5 "http://127.0.0.1:$port/metrics" || true
  done | awk '!/^#/ && NF == 2 {gsub(/"/, "", $1); v[$1] += $2} END {for (k in v) print k, v[k]}' \
    >"$1"
}

# metrics_note BEFORE AFTER: what tessera's counters say about the run, on one line.
metrics_note() {
  awk 'NR == FNR {b[$1] = $2; next} {d[$1] = $2 - b[$1]}
    function g(k) {return d[k] + 0}
    END {
      printf "handshakes full=%d resumed=%d errors=%d; session lookups", \
        g("tessera_tls_handshakes_total{kind=full}"), \
        g("tessera_tls_handshakes_total{kind=resumed}"), g("tessera_tls_handshake_errors_total")
      n = split("hit_l1 hit_store miss timeout error binding_mismatch", r, " ")
      for (i = 1; i <= n; i++) {
        printf " %s=%d", r[i], g("tessera_tls_session_lookups_total{result=" r[i] "}")
      }
      c = g("tessera_store_latency_seconds_count")
      if (c > 0) {
        printf "; store lookups mean %.3f ms, %.1f%% within 1 ms", \
          1000 * g("tessera_store_latency_seconds_sum") / c, \
          100 * g("tessera_store_latency_seconds_bucket{le=0.001}") / c
      }
      printf "; store write errors=%d, seal open failures=%d\n", \
        g("tessera_tls_session_store_write_errors_total"), g("tessera_seal_open_failures_total")
    }' "$1" "$2"
}

# memcached_counts PORT...: "sets hits misses" summed over those memcached processes, read with
# the text protocol's "stats" (bash's /dev/tcp, bounded by timeout).
memcached_counts() {
  local port
  for port in "$@"; do
    # shellcheck disable=SC2016  # $1 is expanded by the inner bash, on purpose
    timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "stats\r\nquit\r\n" >&3 &&
      cat <&3' _ "$port" || true
  done | tr -d '\r' | awk '$1 == "STAT" {v[$2] += $3}
    END {printf "%d %d %d\n", v["cmd_set"], v["get_hits"], v["get_misses"]}'
}

# run_load OUTFILE TLS MODE CONNECTIONS [RATE]: the load tool against every node of the server
# under test, paced at RATE connections/s if given. It runs in the background so that a signal
# to this script cleans up at once; `timeout` bounds it even if it misbehaves.
run_load() {
  local out=$1 tls=$2 mode=$3 conc=$4 rate=${5:-} pid args=() port
  for port in "${SERVER_PORTS[@]}"; do args+=(--connect "127.0.0.1:$port"); done
  [[ -z "$rate" ]] || args+=(--rate "$rate")
  timeout -k 5 $((DURATION + 30)) "$BUILD_DIR/tessera-handshake-load" "${args[@]}" \
    --tls "$tls" --mode "$mode" --concurrency "$conc" --threads "$THREADS" \
    --duration "$DURATION" >"$out" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  if ! wait "$pid"; then
    forget_pid "$pid"
    sed 's/^/    /' "$out" >&2
    die "the load tool failed (output above)"
  fi
  forget_pid "$pid"
  grep -q '^RESULT ' "$out" || die "no RESULT line in $out"
}

# result_field FILE KEY: a value of the load tool's RESULT line.
result_field() {
  awk -v k="$2" '/^RESULT / {
    for (i = 2; i <= NF; i++) {split($i, kv, "="); if (kv[1] == k) print kv[2]}}' "$1"
}

# measure NAME TLS MODE: one load run against the running server; records RESULT_* under
# "TLS/NAME/MODE" and a note line. MODE is full, resume, probe (resume with one connection:
# handshake latency without queueing behind other handshakes) or paced (resume at PACED_RATE).
measure() {
  local name=$1 tls=$2 mode=$3 key="$2/$1/$3" out="$TMP/load-$1-$2-$3.txt" conc=$CONNECTIONS
  local tool_mode=$3 srv=0 mc=0 m0 m1 s0 h0 x0 s1 h1 x1 handshakes errors ticket
  local note="" rate=""
  if [[ "$mode" == probe ]]; then
    conc=1
    tool_mode=resume
  elif [[ "$mode" == paced ]]; then
    rate=${PACED_RATE["$tls"]:-}
    # The load tool reads --rate 0 as "not paced": a memory row with no handshakes sets no rate.
    if [[ -z "$rate" || "$rate" == 0 ]]; then
      NOTES+=("- ${LABEL[$name]}, TLS $tls, paced: skipped (no rate: the memory store row sets it)")
      return 0
    fi
    tool_mode=resume
  fi
  log "${LABEL[$name]}, TLS $tls, $mode: ${DURATION}s"
  if ((${#ADMIN_PORTS[@]} > 0)); then metrics_snapshot "$TMP/before.txt"; fi
  if ((${#MC_PORTS[@]} > 0)); then
    m0=$(memcached_counts "${MC_PORTS[@]}")
    cpu_threads "${MC_PIDS[@]}" >"$TMP/mc-cpu0.txt"
  fi
  cpu_threads "${SERVER_PIDS[@]}" >"$TMP/srv-cpu0.txt"
  run_load "$out" "$tls" "$tool_mode" "$conc" "$rate"
  cpu_threads "${SERVER_PIDS[@]}" >"$TMP/srv-cpu1.txt"
  srv=$(ticks_between "$TMP/srv-cpu0.txt" "$TMP/srv-cpu1.txt")
  RESULT_HS["$key"]=$(result_field "$out" hs_per_s)
  RESULT_P50["$key"]=$(result_field "$out" p50_ms)
  RESULT_P99["$key"]=$(result_field "$out" p99_ms)
  RESULT_RESUMED["$key"]=$(result_field "$out" resumed_pct)
  if [[ "$name" == memory && "$mode" == resume ]]; then
    PACED_RATE["$tls"]=$(awk -v r="${RESULT_HS["$key"]}" -v s="$PACED_SHARE" \
      'BEGIN {printf "%.0f", r * s}')
  fi
  handshakes=$(result_field "$out" handshakes)
  errors=$(result_field "$out" errors)
  [[ "$errors" == 0 ]] || note+="; load tool: $(grep '^errors ' "$out")"
  if [[ "$tls" == 1.3 && "$mode" == resume ]]; then
    # What the server hands out with its cache: a session id as ticket (stateful) or a ticket.
    ticket=$(result_field "$out" ticket_bytes)
    note+="; tickets of $ticket bytes ($( ((ticket <= 32)) && echo "ids: stateful" ||
      echo stateless))"
  fi
  # memcached's own counters show whether the server really kept its sessions there, and its CPU
  # is part of the cost of a shared cache.
  if ((${#MC_PORTS[@]} > 0)); then
    cpu_threads "${MC_PIDS[@]}" >"$TMP/mc-cpu1.txt"
    mc=$(ticks_between "$TMP/mc-cpu0.txt" "$TMP/mc-cpu1.txt")
    m1=$(memcached_counts "${MC_PORTS[@]}")
    read -r s0 h0 x0 <<<"$m0"
    read -r s1 h1 x1 <<<"$m1"
    note+="; memcached sets=$((s1 - s0)) get hits=$((h1 - h0)) misses=$((x1 - x0))"
    note+=", CPU µs/hs server $(per_handshake "$srv" "$handshakes")"
    note+=" + memcached $(per_handshake "$mc" "$handshakes")"
    note+=" (its LRU maintainer thread $(thread_us mc '^mc-lrumaint$' "$handshakes"))"
  fi
  if [[ "$name" == memory || "$name" == ring* ]]; then
    # Where tessera's own CPU goes: the workers (TLS, HTTP, sealing, the session callbacks) and
    # the store's I/O threads (the memcached calls: mostly the kernel's loopback TCP).
    note+="; tessera CPU µs/hs by thread: workers $(thread_us srv '^tessera:w' "$handshakes")"
    note+=", store I/O $(thread_us srv '^tessera:io$' "$handshakes")"
    note+=", other $(thread_us srv '^(tessera|tessera:log)$' "$handshakes")"
  fi
  RESULT_CPU["$key"]=$(per_handshake $((srv + mc)) "$handshakes")
  if ((${#ADMIN_PORTS[@]} > 0)); then
    metrics_snapshot "$TMP/after.txt"
    note+="; tessera (all nodes): $(metrics_note "$TMP/before.txt" "$TMP/after.txt")"
  fi
  [[ -z "$note" ]] || NOTES+=("- ${LABEL[$name]}, TLS $tls, $mode: ${note#; }")
}

# thread_us WHICH REGEX HANDSHAKES: microseconds of CPU per handshake that the threads named like
# REGEX spent during measure()'s load run; WHICH is srv (the servers) or mc (memcached).
thread_us() {
  per_handshake "$(ticks_between "$TMP/$1-cpu0.txt" "$TMP/$1-cpu1.txt" "$2")" "$3"
}

# per_handshake TICKS HANDSHAKES: microseconds of CPU per handshake ("" if none completed).
per_handshake() {
  awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN {if (n > 0) printf "%.0f", t * 1e6 / hz / n}'
}

# bench_server NAME: starts it, measures TLS 1.2 and 1.3 (full, resume, and for the rows the
# latency target compares, the one-connection probe), stops it.
bench_server() {
  local name=$1 tls mode modes first note
  if [[ "$name" == h2o* ]] && ! command -v h2o >/dev/null; then
    NOTES+=("- ${LABEL[$name]}: h2o is not installed (make bench installs it): rows skipped.")
    return 0
  fi
  if ! start_server "$name"; then
    first=$(grep -hv '^$' "$TMP/$name"/*/error.log "$TMP/$name"-*.log 2>/dev/null | tail -3 |
      paste -sd '|' - || true)
    note="did not start or did not answer 200 (log: ${first:-empty})"
    NOTES+=("- ${LABEL[$name]}: could not be made to work: $note; rows skipped.")
    stop_server
    return 0
  fi
  MC_PIDS=()
  MC_PORTS=()
  if [[ "$name" == ring* ]]; then
    MC_PIDS=("${MEMCACHED_PIDS[@]}")
    MC_PORTS=("${MEMCACHED_PORTS[@]}")
  elif [[ "$name" == h2o* ]]; then
    MC_PIDS=("${MEMCACHED_PIDS[0]}")
    MC_PORTS=("${MEMCACHED_PORTS[0]}")
  fi
  case "$name" in
    memory | ring | nginx) modes=(full resume probe paced) ;;
    ring-nol1 | ring-x1) modes=(resume probe paced) ;;  # differ from "ring" only in resuming
    *) modes=(full resume) ;;
  esac
  for tls in 1.2 1.3; do
    for mode in "${modes[@]}"; do measure "$name" "$tls" "$mode"; done
  done
  stop_server
}

versions() {
  local nginx_v h2o_v memcached_v openssl_v tessera_v
  nginx_v=$(nginx -v 2>&1 | sed 's/^nginx version: //')
  h2o_v=$( (h2o --version 2>/dev/null || echo "h2o not installed") | head -1)
  memcached_v=$(memcached -V 2>&1 | head -1)
  openssl_v=$(openssl version)
  tessera_v=$("$BUILD_DIR/tessera" version 2>&1 | head -1 || true)
  echo "$tessera_v, $nginx_v, $h2o_v, $memcached_v, $openssl_v"
}

# ratio A B: A / B with two decimals, or "n/a" without a B.
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'
}

# added_p99 TLS SERVER MODE: the added-latency target's verdict, SERVER's p99 against the memory
# store's in the same MODE.
added_p99() {
  awk -v a="${RESULT_P99["$1/$2/$3"]:-}" -v b="${RESULT_P99["$1/memory/$3"]:-}" 'BEGIN {
    if (a == "" || b == "") {print "not measured"; exit}
    d = a - b; printf "%+.3f ms (%.3f - %.3f) -> %s", d, a, b, (d < 1 ? "PASS" : "FAIL")}'
}

# target_lines TLS SERVER: pass/fail of the three targets for one ring row.
target_lines() {
  local tls=$1 s=$2 label=${LABEL[$2]} hs nginx_hs res verdict
  hs=${RESULT_HS["$tls/$s/resume"]:-}
  [[ -n "$hs" ]] || return 0
  nginx_hs=${RESULT_HS["$tls/nginx/resume"]:-0}
  res=${RESULT_RESUMED["$tls/$s/resume"]}
  verdict=$(awk -v a="$hs" -v b="$nginx_hs" 'BEGIN {
    if (b > 0) printf "%.2fx -> %s", a / b, (a >= b ? "PASS" : "FAIL")
    else print "no nginx result"}')
  echo "- TLS $tls, $label: resumed handshakes/s >= 1.0x nginx's shared cache: $verdict"
  verdict=$(awk -v r="$res" 'BEGIN {printf "%.2f%% -> %s", r, (r >= 99 ? "PASS" : "FAIL")}')
  echo "- TLS $tls, $label: cross-node resumption >= 99%: $verdict"
  echo "- TLS $tls, $label: added p99 handshake latency (ring - memory store) < 1 ms,"\
    "at -c$CONNECTIONS: $(added_p99 "$tls" "$s" resume)"
  echo "- TLS $tls, $label: the same with one connection (no queueing):"\
    "$(added_p99 "$tls" "$s" probe)"
  echo "- TLS $tls, $label: the same at a fixed load of ${PACED_RATE["$tls"]:-?} handshakes/s"\
    "(-c$CONNECTIONS, paced): $(added_p99 "$tls" "$s" paced)"
}

# ring_x1_lines TLS: the one-node ring row against the same bars, for comparison only (it is not
# cross-node, so not a target row).
ring_x1_lines() {
  local tls=$1 hs nginx_hs r
  hs=${RESULT_HS["$tls/ring-x1/resume"]:-}
  [[ -n "$hs" ]] || return 0
  nginx_hs=${RESULT_HS["$tls/nginx/resume"]:-0}
  r=$(ratio "$hs" "$nginx_hs")
  [[ "$r" == n/a ]] || r+=x
  echo "- TLS $tls, ${LABEL[ring-x1]} (for comparison, not a target row): handshakes/s $r"\
    "nginx's; added p99 with one connection $(added_p99 "$tls" ring-x1 probe), at a fixed load"\
    "$(added_p99 "$tls" ring-x1 paced)"
}

report() {
  local header table tls s mode key hs base ratio lines targets=""
  header="### Session benchmark, $(date -u), nproc=$(nproc)"$'\n\n'
  header+="$(versions)."$'\n'
  header+="tessera-handshake-load -c$CONNECTIONS -t$THREADS -d${DURATION}s per row (TLS 1.3: one"
  header+=" GET per connection so that tickets arrive; TLS 1.2: handshake only); resume: each"
  header+=" connection offers its newest session to the next node; full: no session offered."
  header+=" Ring rows: 3 tessera nodes (1 worker each) on a 3-node memcached ring, replicas 1,"
  header+=" every resumption cross-node (\"ring x1\": one tessera node on the same ring, L1 off)."
  header+=" Latency is TCP connect start to handshake done; in resume"
  header+=" mode it and resumed % leave out each connection's first (full) handshake. CPU µs/hs is"
  header+=" the servers' own CPU time (plus memcached's for the rows that use it) per handshake;"
  header+=" the notes split tessera's by thread."
  header+=" \"resume, c=1\" rows use a single connection: handshake latency without queueing"
  header+=" behind other handshakes, which at -c$CONNECTIONS is most of p99 once a server is"
  header+=" saturated. \"resume, paced\" rows start connections at a fixed rate, the same for"
  header+=" every server: $PACED_SHARE of the memory store's resumed handshakes/s (TLS 1.2:"
  header+=" ${PACED_RATE[1.2]:-?}/s, TLS 1.3: ${PACED_RATE[1.3]:-?}/s); their latency counts from"
  header+=" when a connection was due, so a server that falls behind pays for it."
  header+=" Load average at start: $LOAD_AT_START."
  table="| tls | server | mode | handshakes/s | p50 ms | p99 ms | resumed % |"
  table+=" ratio to nginx (handshakes/s) | server CPU µs/hs |"$'\n'
  table+="|---|---|---|---|---|---|---|---|---|"
  for tls in 1.2 1.3; do
    for mode in resume probe paced full; do
      base=${RESULT_HS["$tls/nginx/$mode"]:-0}
      for s in "${SERVERS[@]}"; do
        key="$tls/$s/$mode"
        hs=${RESULT_HS["$key"]:-}
        [[ -n "$hs" ]] || continue
        ratio=$(ratio "$hs" "$base")
        local resumed=${RESULT_RESUMED["$key"]} mode_label=$mode
        [[ "$mode" == full ]] && resumed="-"
        [[ "$mode" == probe ]] && mode_label="resume, c=1"
        if [[ "$mode" == paced ]]; then
          mode_label="resume, paced"
          ratio="-"  # every server gets the same rate
        fi
        table+=$'\n'"| $tls | ${LABEL[$s]} | $mode_label | $hs | ${RESULT_P50["$key"]} |"
        table+=" ${RESULT_P99["$key"]} | $resumed | $ratio | ${RESULT_CPU["$key"]:-n/a} |"
      done
    done
  done
  for tls in 1.2 1.3; do
    for s in ring ring-nol1; do
      lines=$(target_lines "$tls" "$s")
      [[ -z "$lines" ]] || targets+="$lines"$'\n'
    done
  done
  for tls in 1.2 1.3; do
    lines=$(ring_x1_lines "$tls")
    [[ -z "$lines" ]] || targets+="$lines"$'\n'
  done
  local text="$header"$'\n\n'"$table"$'\n\n'"Targets:"$'\n'"$targets"
  if ((${#NOTES[@]} > 0)); then
    text+=$'\n'"Notes:"$'\n'"$(printf '%s\n' "${NOTES[@]}")"$'\n'
  fi
  echo
  echo "$text"
  if [[ -n "${RESULTS_FILE:-}" ]]; then
    printf '\n%s' "$text" >>"$RESULTS_FILE"
    log "appended to $RESULTS_FILE"
  fi
}

main() {
  (($# == 1)) || die "usage: bash bench/sessions.sh BUILD_DIR"
  BUILD_DIR=$1
  [[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a whole number of seconds"
  [[ "$CONNECTIONS" =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a whole number"
  [[ "$PACED_SHARE" =~ ^(0?\.[0-9]*[1-9][0-9]*|1(\.0*)?)$ ]] ||
    die "PACED_SHARE must be a number in (0, 1]"
  [[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a whole number"
  local tool
  for tool in nginx memcached curl openssl ss awk pgrep getconf timeout; do
    command -v "$tool" >/dev/null || die "$tool is not installed (make bench installs it)"
  done
  for tool in tessera tessera-demo-backend tessera-handshake-load; do
    [[ -x "$BUILD_DIR/$tool" ]] || die "$BUILD_DIR/$tool not found: build first"
  done

  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  TMP=$(mktemp -d -t tessera-sessions.XXXXXX)
  LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
  make_cert
  "$BUILD_DIR/tessera" keygen seal --out "$TMP/seal.key" >/dev/null ||
    die "tessera keygen seal failed"

  CLK_TCK=$(getconf CLK_TCK)
  [[ "$CLK_TCK" =~ ^[1-9][0-9]*$ ]] || die "getconf CLK_TCK gave '$CLK_TCK'"
  declare -gA RESULT_HS=() RESULT_P50=() RESULT_P99=() RESULT_RESUMED=() RESULT_CPU=()
  declare -gA PACED_RATE=()  # by TLS version, set by the memory store's resume row
  alloc_port BACKEND_PORT
  start_backend
  start_memcached

  local name
  for name in "${SERVERS[@]}"; do
    [[ -z "${ONLY:-}" || " $ONLY " == *" $name "* ]] && bench_server "$name"
  done
  report
}

main "$@"
