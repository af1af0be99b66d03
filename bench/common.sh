# shellcheck shell=bash
# Shared by the bench scripts: process, port, certificate, backend and CPU-time helpers.
# The sourcing script sets SCRIPT_NAME and STARTUP_TIMEOUT, and owns TMP, PIDS, USED_PORTS,
# BACKEND_PORT and BUILD_DIR. Nothing here runs on its own.

# The TLS 1.2 suites tessera offers (proxy/tls_context.cc), given to the other servers too.
# shellcheck disable=SC2034  # used by the sourcing scripts
readonly TLS12_CIPHERS="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

log() { echo "$SCRIPT_NAME: $*" >&2; }

die() {
  log "error: $*"
  exit 1
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  if [[ -n "$TMP" && -d "$TMP" ]]; then rm -rf "$TMP"; fi
  exit "$rc"
}

# Stops one started process: SIGTERM, then SIGKILL if it has not exited after a few seconds.
stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

forget_pid() {
  local p kept=()
  for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || kept+=("$p"); done
  PIDS=("${kept[@]}")
}

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
}

# alloc_port VAR: stores in VAR a loopback TCP port that no socket uses. The port is taken below
# the ephemeral range, so that none of the load tool's or the servers' outgoing connections can
# grab it between now and the moment the server binds it.
alloc_port() {
  local low _high base p
  read -r low _high </proc/sys/net/ipv4/ip_local_port_range
  base=$((low > 21000 ? 20000 : 1024))
  for _ in $(seq 1 500); do
    p=$((base + RANDOM % (low - base)))
    [[ " ${USED_PORTS[*]-} " == *" $p "* ]] && continue
    if [[ -z "$(ss -Htan "( sport = :$p )")" ]]; then
      USED_PORTS+=("$p")
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  die "found no free port between $base and $low"
}

# start NAME LOGFILE CMD...: starts CMD in the background, output to LOGFILE; sets STARTED_PID.
start() {
  local name=$1 logfile=$2
  shift 2
  "$@" >"$logfile" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  log "started $name (pid $STARTED_PID)"
}

# wait_listening NAME PID PORT LOGFILE: until PORT is listening. Returns 1, after printing the
# log, if PID exits first or the port is not up in time; callers decide whether that is fatal.
wait_listening() {
  local name=$1 pid=$2 port=$3 logfile=$4
  for _ in $(seq 1 $((STARTUP_TIMEOUT * 10))); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited during startup; its output:"
      sed 's/^/    /' "$logfile" >&2
      return 1
    fi
    [[ -n "$(ss -Htln "( sport = :$port )")" ]] && return 0
    sleep 0.1
  done
  log "$name is not listening on 127.0.0.1:$port after ${STARTUP_TIMEOUT}s; its output:"
  sed 's/^/    /' "$logfile" >&2
  return 1
}

make_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null || die "openssl could not make a cert"
}

# The backend all servers share. The default is a one-worker nginx answering a fixed 200: it costs
# little CPU, so on 2 cores the servers' own cost decides the throughput. BACKEND=demo uses
# tessera's demo backend (echoes the request as JSON).
start_backend() {
  if [[ "${BACKEND:-nginx}" == demo ]]; then
    start backend "$TMP/backend.log" "$BUILD_DIR/tessera-demo-backend" --port "$BACKEND_PORT" \
      --threads 1
  else
    local dir="$TMP/backend-nginx" user_line=""
    mkdir -p "$dir"
    [[ "$(id -u)" == 0 ]] && user_line="user root;"
    cat >"$dir/nginx.conf" <<EOF
$user_line
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$BACKEND_PORT;
    location / { return 200 "hello from the backend\n"; }
  }
}
EOF
    start backend "$TMP/backend.log" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
  fi
  wait_listening backend "$STARTED_PID" "$BACKEND_PORT" "$TMP/backend.log" ||
    die "the backend did not start"
}

# cpu_threads PID...: one "NAME TICKS" line per thread name: utime+stime (fields 14 and 15 of
# /proc/PID/task/TID/stat, in clock ticks) summed over the threads of that name in each PID and in
# its child processes (nginx's and h2o's workers are children of the master). tessera names its
# threads by role (tessera:w0, tessera:io, tessera:log; the main thread keeps "tessera"), and so
# does memcached (mc-worker, mc-lrumaint, ...). Threads that exit while this runs are skipped.
cpu_threads() {
  local pid p children=() files=()
  for pid in "$@"; do
    mapfile -t children < <(pgrep -P "$pid" || true)
    for p in "$pid" "${children[@]}"; do files+=(/proc/"$p"/task/*/stat); done
  done
  # The name (field 2) is in parentheses and may hold spaces or parentheses: it ends at the last
  # ") ", and the fields are counted after it.
  { cat "${files[@]}" 2>/dev/null || true; } |
    awk 'match($0, /\(.*\) /) {
      name = substr($0, RSTART + 1, RLENGTH - 3)
      gsub(/[ \t]/, "_", name)
      split(substr($0, RSTART + RLENGTH), f, " ")
      t[name] += f[12] + f[13]
    }
    END {for (n in t) print n, t[n]}'
}

# ticks_between BEFORE AFTER [REGEX]: clock ticks spent between two cpu_threads snapshots by the
# threads whose name matches REGEX (all of them without one).
ticks_between() {
  awk -v re="${3:-.}" 'NR == FNR {b[$1] = $2; next} $1 ~ re {d += $2 - b[$1]}
    END {printf "%d\n", d}' "$1" "$2"
}

# cpu_ticks PID...: the CPU clock ticks of every thread of those processes and their children.
cpu_ticks() {
  cpu_threads "$@" | awk '{t += $2} END {printf "%d\n", t}'
}
