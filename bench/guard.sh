#!/usr/bin/env bash
# Guard macro benchmark: signed POST req/s through tessera's guard plugin, as a ratio to the same
# POST unsigned. One tessera (plain HTTP, so that TLS does not dilute the guard's cost) in front
# of the demo backend, with the memcached store, driven by tessera-guard-load with keep-alive.
#
# Usage (from the repo root): bash bench/guard.sh BUILD_DIR
#   DURATION=5       seconds per load run (default 5)
#   ROUNDS=3         rounds of one unsigned and one signed run, alternating (default 3)
#   WORKERS=1        tessera workers (default 1)
#   CONNECTIONS=50   keep-alive connections (default 50)
#   THREADS=1        load tool threads (default 1)
#   BODY_BYTES=256   bytes of body in every POST (default 256)
#   RESULTS_FILE=f   also append the tables, with their header, to f (not when a run had errors)
#
# Needs: memcached, curl, ss, awk, pgrep, getconf, timeout, and
# BUILD_DIR/{tessera,tessera-demo-backend,tessera-guard-load}.
#
# What is compared:
# - "unsigned": POST /api/cart, on a route without plugins: the proxy's own cost.
# - "signed": POST /api/orders, on a route running the guard with protect POST /api/orders,
#   session_cookie SESSIONID, window 60s. Each connection first agrees its own key through
#   POST /_tessera/keys (its own session cookie), then signs every POST as client.js does
#   (Content-Digest, RFC 9421 hmac-sha256, a fresh nonce). Per request the guard parses the
#   signature, hashes the body, reads the session's sealed key record from memcached, checks the
#   HMAC and adds the nonce to memcached: two store round trips.
# Both send the same body, cookie and other headers; the signed POST adds about 300 bytes of
# signature headers, which the backend echoes back. The load tool's clock starts once every
# connection is ready (signed: has its key), so key agreement is not measured.
# On a small machine the load tool, the backend, memcached and tessera share the cores, so the
# tables also give tessera's and memcached's own CPU time per request.

set -euo pipefail

readonly SCRIPT_NAME=guard.sh
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

readonly DURATION="${DURATION:-5}"
readonly ROUNDS="${ROUNDS:-3}"
readonly WORKERS="${WORKERS:-1}"
readonly CONNECTIONS="${CONNECTIONS:-50}"
readonly THREADS="${THREADS:-1}"
readonly BODY_BYTES="${BODY_BYTES:-256}"
readonly WARMUP_SECONDS=1
readonly STARTUP_TIMEOUT=10  # seconds a process gets to start listening
readonly SIGNED_PATH=/api/orders
readonly UNSIGNED_PATH=/api/cart

TMP=""
PIDS=()        # every process this script started and has not stopped yet
USED_PORTS=()  # ports handed out by alloc_port, not necessarily bound yet
NOTES=()       # lines printed under the tables
TESSERA_PID=""
TESSERA_PORT=""
ADMIN_PORT=""
MEMCACHED_PID=""
MEMCACHED_PORT=""
FAILED_RUNS=0  # runs with errors: their numbers are not a measurement of the guard

start_memcached() {
  local user_args=()
  # memcached refuses to run as root without -u.
  [[ "$(id -u)" == 0 ]] && user_args=(-u root)
  alloc_port MEMCACHED_PORT
  start memcached "$TMP/memcached.log" \
    memcached -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64 -t 1 "${user_args[@]}"
  MEMCACHED_PID=$STARTED_PID
  wait_listening memcached "$MEMCACHED_PID" "$MEMCACHED_PORT" "$TMP/memcached.log" ||
    die "memcached did not start"
}

# write_tessera_conf FILE: the guard on /api/orders (and its endpoints under /_tessera/), every
# other path straight to the backend.
write_tessera_conf() {
  cat >"$1" <<EOF
workers: $WORKERS
plugins:
  bench_guard:
    type: guard
    session_cookie: SESSIONID
    protect: [ { method: POST, path_prefix: $SIGNED_PATH } ]
    window: 60s
listeners:
  - name: bench
    listen: 127.0.0.1:$TESSERA_PORT
    routes:
      - { path_prefix: /_tessera/, upstream: app, plugins: [bench_guard] }
      - { path_prefix: $SIGNED_PATH, upstream: app, plugins: [bench_guard] }
      - { path_prefix: /, upstream: app }
upstreams:
  app:
    servers: [127.0.0.1:$BACKEND_PORT]
    keepalive: 64
session_cache:
  store: memcached
  seal_keys:
    - { id: k1, file: $TMP/seal.key }
  memcached:
    servers: [127.0.0.1:$MEMCACHED_PORT]
limits:
  drain_timeout: 1s
admin:
  listen: 127.0.0.1:$ADMIN_PORT
log:
  level: warn
  access_log: off
  audit_log: $TMP/audit.log
EOF
}

# post_status PATH: the status of one unsigned POST, and the X-Tessera-Guard header if any.
post_status() {
  curl -s --max-time 5 -o /dev/null -X POST -H 'Cookie: SESSIONID=bench-check' \
    -H 'Content-Type: application/json' --data-binary '{}' \
    -w '%{http_code} %header{x-tessera-guard}' "http://127.0.0.1:$TESSERA_PORT$1" || true
}

start_tessera() {
  local conf="$TMP/tessera.yaml" answer
  alloc_port TESSERA_PORT
  alloc_port ADMIN_PORT
  write_tessera_conf "$conf"
  start tessera "$TMP/tessera.log" "$BUILD_DIR/tessera" run --config "$conf"
  TESSERA_PID=$STARTED_PID
  wait_listening tessera "$TESSERA_PID" "$TESSERA_PORT" "$TMP/tessera.log" ||
    die "tessera did not start"
  # The unprotected path goes through; the protected one, unsigned, must be refused by the guard,
  # else the signed runs would not measure it.
  answer=$(post_status "$UNSIGNED_PATH")
  [[ "$answer" == "200 "* ]] || die "POST $UNSIGNED_PATH answered '$answer' instead of 200"
  answer=$(post_status "$SIGNED_PATH")
  [[ "$answer" == "401 missing_signature" ]] ||
    die "unsigned POST $SIGNED_PATH answered '$answer', not 401 missing_signature: no guard?"
}

# guard_events: the guard's event counters ("event=N ..."), from tessera's admin endpoint.
guard_events() {
  curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
    awk -F'[{}" ,=]+' '/^tessera_plugin_events_total\{/ {
        for (i = 2; i < NF; i += 2) if ($i == "event") e = $(i + 1)
        printf "%s=%d\n", e, $NF}' | sort
}

# events_delta BEFORE AFTER: the counters that moved, on one line.
events_delta() {
  awk -F= 'NR == FNR {b[$1] = $2; next} $2 - b[$1] > 0 {out = out sep $1 "=" ($2 - b[$1]); sep = " "}
    END {print (out == "" ? "none" : out)}' "$1" "$2"
}

# run_load OUTFILE MODE PREFIX SECONDS: the load tool against tessera; its JSON line goes to
# OUTFILE, its report to OUTFILE.err. It runs in the background so that a signal to this script
# cleans up at once; `timeout` bounds it even if it misbehaves. Exit status 1 (errors in the run)
# is recorded by the caller; anything else stops the benchmark.
run_load() {
  local out=$1 mode=$2 prefix=$3 secs=$4 path=$UNSIGNED_PATH pid rc=0
  [[ "$mode" == signed ]] && path=$SIGNED_PATH
  timeout -k 5 $((secs + 30)) "$BUILD_DIR/tessera-guard-load" --host 127.0.0.1 \
    --port "$TESSERA_PORT" --mode "$mode" --path "$path" --connections "$CONNECTIONS" \
    --threads "$THREADS" --duration "$secs" --body-bytes "$BODY_BYTES" \
    --cookie-prefix "$prefix" >"$out" 2>"$out.err" &
  pid=$!
  PIDS+=("$pid")
  wait "$pid" || rc=$?
  forget_pid "$pid"
  if ((rc != 0 && rc != 1)) || ! grep -q '^{"requests":' "$out"; then
    sed 's/^/    /' "$out" "$out.err" >&2
    die "the load tool failed (exit $rc, output above)"
  fi
}

# json_field FILE KEY: a number of the load tool's JSON line.
json_field() {
  sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1"
}

# per_request TICKS REQUESTS: microseconds of CPU per request ("n/a" if none completed).
per_request() {
  awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" \
    'BEGIN {if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "n/a"}'
}

# measure ROUND MODE: one run; records RESULT_* under "ROUND/MODE" and notes what went wrong.
measure() {
  local round=$1 mode=$2 key="$1/$2" out="$TMP/load-$1-$2.json" t0 t1 m0 m1 e0 e1 requests
  local errors
  log "round $round, $mode: ${DURATION}s"
  guard_events >"$TMP/events-before.txt"
  t0=$(cpu_ticks "$TESSERA_PID")
  m0=$(cpu_ticks "$MEMCACHED_PID")
  run_load "$out" "$mode" "r$round-$mode-" "$DURATION"
  t1=$(cpu_ticks "$TESSERA_PID")
  m1=$(cpu_ticks "$MEMCACHED_PID")
  guard_events >"$TMP/events-after.txt"
  requests=$(json_field "$out" requests)
  errors=$(json_field "$out" errors)
  RESULT_RPS["$key"]=$(json_field "$out" rps)
  RESULT_P50["$key"]=$(json_field "$out" p50_ms)
  RESULT_P99["$key"]=$(json_field "$out" p99_ms)
  RESULT_ERRORS["$key"]=$errors
  RESULT_CPU["$key"]=$(per_request $((t1 - t0)) "$requests")
  RESULT_MC_CPU["$key"]=$(per_request $((m1 - m0)) "$requests")
  e0="$TMP/events-before.txt"
  e1="$TMP/events-after.txt"
  if [[ "$mode" == signed ]]; then
    NOTES+=("- round $round, signed: guard events $(events_delta "$e0" "$e1")")
  fi
  if [[ "$errors" != 0 ]]; then
    FAILED_RUNS=$((FAILED_RUNS + 1))
    NOTES+=("- round $round, $mode: $errors ERRORS: $(grep 'error:' "$out.err" | sed 's/^ *//' |
      paste -sd ';' -)")
  fi
}

ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {if (a > 0 && b > 0) printf "%.2f", a / b; else print "n/a"}'
}

# round_table ROUND: the markdown table of one round.
round_table() {
  local r=$1 mode path
  echo "Round $r of $ROUNDS:"
  echo
  echo "| mode | request | req/s | p50 ms | p99 ms | errors | tessera CPU µs/req |" \
    "memcached CPU µs/req |"
  echo "|---|---|---|---|---|---|---|---|"
  for mode in unsigned signed; do
    path=$UNSIGNED_PATH
    [[ "$mode" == signed ]] && path=$SIGNED_PATH
    echo "| $mode | POST $path | ${RESULT_RPS["$r/$mode"]} | ${RESULT_P50["$r/$mode"]} |" \
      "${RESULT_P99["$r/$mode"]} | ${RESULT_ERRORS["$r/$mode"]} | ${RESULT_CPU["$r/$mode"]} |" \
      "${RESULT_MC_CPU["$r/$mode"]} |"
  done
  echo "| signed / unsigned | | $(ratio "${RESULT_RPS["$r/signed"]}" "${RESULT_RPS["$r/unsigned"]}")" \
    "| $(ratio "${RESULT_P50["$r/signed"]}" "${RESULT_P50["$r/unsigned"]}")" \
    "| $(ratio "${RESULT_P99["$r/signed"]}" "${RESULT_P99["$r/unsigned"]}") |" \
    "| $(ratio "${RESULT_CPU["$r/signed"]}" "${RESULT_CPU["$r/unsigned"]}") | |"
}

# mean_ratio FIELD_ARRAY_NAME: the mean over the rounds of signed / unsigned.
mean_ratio() {
  local -n field=$1
  local r values=()
  for r in $(seq 1 "$ROUNDS"); do values+=("${field["$r/signed"]}" "${field["$r/unsigned"]}"); done
  printf '%s\n' "${values[@]}" | paste -sd ' ' - | awk '{
      n = 0; s = 0
      for (i = 1; i < NF; i += 2) if ($i > 0 && $(i + 1) > 0) {s += $i / $(i + 1); n++}
      if (n > 0) printf "%.2f", s / n; else print "n/a"}'
}

versions() {
  local tessera_v memcached_v openssl_v
  tessera_v=$("$BUILD_DIR/tessera" version 2>&1 | head -1 || true)
  memcached_v=$(memcached -V 2>&1 | head -1)
  openssl_v=$(openssl version 2>/dev/null || echo "openssl not installed")
  echo "$tessera_v, $memcached_v, $openssl_v"
}

report() {
  local header text r
  header="### Guard, $(date -u), nproc=$(nproc)"$'\n\n'
  header+="$(versions)."$'\n'
  header+="tessera-guard-load -c$CONNECTIONS -t$THREADS -d${DURATION}s, keep-alive plain HTTP/1.1,"
  header+=" POST with a $BODY_BYTES-byte JSON body; tessera $WORKERS worker(s), demo backend,"
  header+=" session_cache on one memcached. \"unsigned\": POST $UNSIGNED_PATH on a route without"
  header+=" plugins. \"signed\": POST $SIGNED_PATH through the guard (protect POST $SIGNED_PATH),"
  header+=" each connection with its own session and agreed key (not measured), every POST signed"
  header+=" as client.js signs it (Content-Digest, RFC 9421 hmac-sha256, fresh nonce), which costs"
  header+=" the guard one memcached round trip (the nonce's add; the worker keeps the session's"
  header+=" key record for 800 ms). Runs alternate, unsigned first. CPU µs/req: tessera's (all threads) and memcached's own CPU time per 2xx"
  header+=" response. Load average at start: $LOAD_AT_START."
  text="$header"
  for r in $(seq 1 "$ROUNDS"); do text+=$'\n\n'"$(round_table "$r")"; done
  text+=$'\n\n'"Mean signed / unsigned over $ROUNDS rounds: req/s $(mean_ratio RESULT_RPS),"
  text+=" p99 $(mean_ratio RESULT_P99), tessera CPU/req $(mean_ratio RESULT_CPU)."
  if ((${#NOTES[@]} > 0)); then
    text+=$'\n\n'"$(printf '%s\n' "${NOTES[@]}")"
  fi
  echo
  echo "$text"
  if ((FAILED_RUNS > 0)); then
    die "$FAILED_RUNS run(s) had errors (see the notes): not a measurement of the guard"
  fi
  if [[ -n "${RESULTS_FILE:-}" ]]; then
    printf '\n%s\n' "$text" >>"$RESULTS_FILE"
    log "appended to $RESULTS_FILE"
  fi
}

main() {
  (($# == 1)) || die "usage: bash bench/guard.sh BUILD_DIR"
  BUILD_DIR=$1
  local name value tool r mode
  for name in DURATION ROUNDS WORKERS CONNECTIONS THREADS; do
    value=${!name}
    [[ "$value" =~ ^[1-9][0-9]*$ ]] || die "$name must be a whole number above 0"
  done
  [[ "$BODY_BYTES" =~ ^[0-9]+$ ]] || die "BODY_BYTES must be a whole number"
  for tool in memcached curl ss awk pgrep getconf timeout; do
    command -v "$tool" >/dev/null || die "$tool is not installed (make bench installs it)"
  done
  for tool in tessera tessera-demo-backend tessera-guard-load; do
    [[ -x "$BUILD_DIR/$tool" ]] || die "$BUILD_DIR/$tool not found: build first"
  done

  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  TMP=$(mktemp -d -t tessera-guard.XXXXXX)
  LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
  "$BUILD_DIR/tessera" keygen seal --out "$TMP/seal.key" >/dev/null ||
    die "tessera keygen seal failed"
  CLK_TCK=$(getconf CLK_TCK)
  [[ "$CLK_TCK" =~ ^[1-9][0-9]*$ ]] || die "getconf CLK_TCK gave '$CLK_TCK'"
  declare -gA RESULT_RPS=() RESULT_P50=() RESULT_P99=() RESULT_ERRORS=() RESULT_CPU=() \
    RESULT_MC_CPU=()

  alloc_port BACKEND_PORT
  BACKEND=demo start_backend
  start_memcached
  start_tessera

  # Warms the upstream connections, the store's connections and the page cache of both paths.
  for mode in unsigned signed; do
    log "warm-up, $mode: ${WARMUP_SECONDS}s"
    run_load "$TMP/warmup-$mode.json" "$mode" "warmup-$mode-" "$WARMUP_SECONDS"
    if [[ "$(json_field "$TMP/warmup-$mode.json" errors)" != 0 ]]; then
      sed 's/^/    /' "$TMP/warmup-$mode.json.err" >&2
      die "the $mode warm-up had errors (the load tool's report above)"
    fi
  done
  for r in $(seq 1 "$ROUNDS"); do
    for mode in unsigned signed; do measure "$r" "$mode"; done
  done
  report
}

main "$@"
