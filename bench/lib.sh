# Shared by bench/run and bench/soak: process bookkeeping, a private broker, RSS and CPU
# readings, the quiet-machine wait. Sourced, not run. Loopback only; everything started here is
# stopped by `bench_cleanup` (installed as the EXIT/INT/TERM trap by `bench_init`).

BENCH_PIDS=()
BENCH_BROKER_PID=
BENCH_TMP=

bench_log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

# Stops what this script started: every recorded process (TERM, then KILL after 10 s), then the
# broker (TERM: `warren broker` stops its node cleanly), then removes the scratch dir.
bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${BENCH_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]}"; do
    bench_wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -n "$BENCH_BROKER_PID" ]; then
    kill -TERM "$BENCH_BROKER_PID" 2>/dev/null || true
    bench_wait_gone "$BENCH_BROKER_PID" 60 || kill -KILL "$BENCH_BROKER_PID" 2>/dev/null || true
  fi
  if [ -n "$BENCH_TMP" ] && [ -z "${BENCH_KEEP_TMP:-}" ]; then
    rm -rf "$BENCH_TMP"
  fi
  exit "$rc"
}

# bench_wait_gone PID SECONDS: waits for PID to exit; false if it is still there.
bench_wait_gone() {
  local pid=$1 i
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  return 1
}

# bench_forget PID: drops PID from the processes to stop at the end (it has ended).
bench_forget() {
  local kept=() p
  for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
  BENCH_PIDS=("${kept[@]}")
}

# bench_stop PID: SIGTERM, wait up to 30 s, then SIGKILL; forgets the pid.
bench_stop() {
  kill -TERM "$1" 2>/dev/null || true
  bench_wait_gone "$1" 30 || kill -KILL "$1" 2>/dev/null || true
  bench_forget "$1"
}

bench_init() {
  BENCH_TMP=$(mktemp -d -t warren-bench.XXXXXX)
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Installs wrk and hyperfine if missing, builds the release binaries (BENCH_NO_BUILD=1 uses
# those already built, e.g. when bench/soak follows bench/run).
bench_prepare() {
  WARREN_SETUP_BENCH=1 scripts/setup
  local target=${CARGO_TARGET_DIR:-$PWD/target}
  WARREN=$target/release/warren
  # The worker as deployed: `warren worker` alone (deploy/kubernetes/base/worker.yaml).
  WORKER=$target/release/warren-worker
  BENCH=$target/release/warren-bench
  if [ "${BENCH_NO_BUILD:-0}" = 1 ] && [ -x "$WARREN" ] && [ -x "$WORKER" ] && [ -x "$BENCH" ]; then
    bench_log "BENCH_NO_BUILD=1: using the binaries in $target/release as they are"
    return 0
  fi
  bench_log "building (cargo build --release --locked)"
  cargo build --release --locked
}

# Starts a private RabbitMQ node; exports AMQP_URL.
bench_start_broker() {
  "$WARREN" broker --dir "$BENCH_TMP/broker" --env-file "$BENCH_TMP/broker.env" \
    >"$BENCH_TMP/broker.out" 2>&1 &
  BENCH_BROKER_PID=$!
  local i
  for ((i = 0; i < 600; i++)); do
    [ -s "$BENCH_TMP/broker.env" ] && break
    kill -0 "$BENCH_BROKER_PID" 2>/dev/null || { cat "$BENCH_TMP/broker.out" >&2; echo "bench: the broker did not start" >&2; return 1; }
    sleep 0.1
  done
  [ -s "$BENCH_TMP/broker.env" ] || { echo "bench: the broker did not start within 60 s" >&2; return 1; }
  set -a
  # shellcheck disable=SC1091
  . "$BENCH_TMP/broker.env"
  set +a
  bench_log "broker up: $(sed -n 's/^RabbitMQ node \([^ ]*\) is up.*/\1/p' "$BENCH_TMP/broker.out")"
}

# The pids of PID and all its descendants.
bench_tree() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2; pids[NR] = $1 }
    END {
      keep[root] = 1; changed = 1
      while (changed) { changed = 0
        for (i in pids) { p = pids[i]; if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 } } }
      for (p in keep) print p }'
}

# CPU time (user + system, in clock ticks) of the given pids, summed.
bench_cpu_ticks() {
  local total=0 pid t
  for pid in "$@"; do
    t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

# Busy and total ticks of the whole machine, "busy total".
bench_machine_ticks() {
  awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat
}

# RSS of a pid in kB (0 if gone).
bench_rss_kb() {
  awk '/^VmRSS:/ { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# Waits until http://127.0.0.1:PORT/readyz answers 200, up to 30 s.
bench_wait_ready() {
  local port=$1 i
  for ((i = 0; i < 300; i++)); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: nothing ready on port $port within 30 s" >&2
  return 1
}

# A free TCP port on the loopback.
bench_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The 1-minute load average.
bench_load1() { cut -d' ' -f1 /proc/loadavg; }

# Waits (polling every 30 s, up to MAX seconds) for the 1-minute load average to fall below
# LIMIT; other builds and tests share this machine. Records what it saw in BENCH_QUIET.
bench_wait_quiet() {
  local limit=$1 max=$2 waited=0 load
  while :; do
    load=$(bench_load1)
    if awk -v l="$load" -v m="$limit" 'BEGIN { exit !(l < m) }'; then
      BENCH_QUIET="load average $(cut -d' ' -f1-3 /proc/loadavg) (below $limit after ${waited} s of waiting)"
      bench_log "machine quiet: $BENCH_QUIET"
      return 0
    fi
    if [ "$waited" -ge "$max" ]; then
      BENCH_QUIET="load average $(cut -d' ' -f1-3 /proc/loadavg): NOT below $limit after ${waited} s of waiting; measured anyway"
      bench_log "machine still busy: $BENCH_QUIET"
      return 0
    fi
    bench_log "load average $load >= $limit; waiting (${waited}/${max} s)"
    sleep 30
    waited=$((waited + 30))
  done
}

# The machine, as markdown lines.
bench_machine() {
  echo "- cores: $(nproc); CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "- memory: $(free -h | awk '/^Mem:/ { print $2 " total, " $7 " available" }')"
  echo "- kernel: $(uname -sr)"
  echo "- RabbitMQ: $(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null || echo '?'); Erlang (erlang-base): $(dpkg-query -W -f '${Version}' erlang-base 2>/dev/null || echo '?')"
  echo "- rustc: $(rustc --version 2>/dev/null | cut -d' ' -f2-); wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "- warren: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' (with uncommitted changes in crates/)')"
}

# Waits (up to 60 s) until the broker's process tree (root PID) uses less than a tenth of a core
# over one second: after a phase the broker still writes and compacts its log for a while, and
# the next phase should not pay for it.
bench_settle() {
  local root=$1 i t0 t1
  for ((i = 0; i < 60; i++)); do
    t0=$(bench_cpu_ticks $(bench_tree "$root"))
    sleep 1
    t1=$(bench_cpu_ticks $(bench_tree "$root"))
    [ $((t1 - t0)) -lt 10 ] && { bench_log "broker settled after $((i + 1)) s"; return 0; }
  done
  bench_log "broker still busy after 60 s; going on"
}

# AnonHugePages of a pid in kB (0 if none or gone).
bench_huge_kb() {
  awk '/^AnonHugePages:/ { print $2; found = 1 } END { if (!found) print 0 }' \
    "/proc/$1/smaps_rollup" 2>/dev/null || echo 0
}

# bench_burst PID PORT BURSTS COUNT IDLE CSV: warren web's memory after a burst. Takes the idle
# RSS (mean of five samples a second apart), sends BURSTS concurrent `GET /generate?count=COUNT`
# and records the peak RSS, then RSS and AnonHugePages every 5 s for IDLE seconds into CSV.
# Sets BURST_IDLE_KB, BURST_PEAK_KB, BURST_OK (answers 200), BURST_SECONDS, BURST_BACK (the
# first sample from which every later one is within 25 % of idle; -1 if none), BURST_LAST_KB,
# BURST_MAX_AFTER_KB (the largest from BURST_BACK on), BURST_HUGE_KB (at the end) and
# BURST_PASS (1 when back within 60 s and staying there).
bench_burst() {
  local pid=$1 port=$2 bursts=$3 count=$4 idle=$5 csv=$6 i p rss start
  BURST_IDLE_KB=$(for _ in 1 2 3 4 5; do bench_rss_kb "$pid"; sleep 1; done | awk '{ s += $1 } END { printf "%d", s / NR }')
  bench_log "idle RSS $BURST_IDLE_KB kB; burst: $bursts x count=$count"
  echo "seconds_after_burst,web_rss_kb,anon_huge_kb" >"$csv"
  local codes=$BENCH_TMP/burst-codes clients=()
  : >"$codes"
  start=$SECONDS
  for ((i = 0; i < bursts; i++)); do
    curl -s -o "$codes.body-$i" -w "%{http_code} $i\n" --max-time 60 \
      "http://127.0.0.1:$port/generate?count=$count" >>"$codes" &
    clients+=($!)
  done
  BURST_PEAK_KB=0
  while :; do
    rss=$(bench_rss_kb "$pid")
    [ "$rss" -gt "$BURST_PEAK_KB" ] && BURST_PEAK_KB=$rss
    local alive=0
    for p in "${clients[@]}"; do kill -0 "$p" 2>/dev/null && alive=1 && break; done
    [ "$alive" = 1 ] || break
    sleep 0.5
  done
  for p in "${clients[@]}"; do wait "$p" || true; done
  BURST_SECONDS=$((SECONDS - start))
  BURST_OK=$(grep -c '^200 ' "$codes" || true)
  # Every status with its count ("200 x48, 503 x2"), and the start of one answer that was not a 200.
  BURST_CODES=$(cut -d' ' -f1 "$codes" | sort | uniq -c | awk '{ printf "%s%s x%s", sep, $2, $1; sep = ", " }')
  BURST_OTHER=
  i=$(awk '$1 != 200 { print $2; exit }' "$codes")
  [ -z "$i" ] || BURST_OTHER=$(head -c 300 "$codes.body-$i" 2>/dev/null | tr -d '\n')
  rm -f "$codes".body-*
  bench_log "burst over in ${BURST_SECONDS} s: $BURST_OK of $bursts answered 200 ($BURST_CODES); peak RSS $BURST_PEAK_KB kB"
  [ -z "$BURST_OTHER" ] || bench_log "one answer that was not a 200: $BURST_OTHER"
  start=$SECONDS
  while [ $((SECONDS - start)) -le "$idle" ]; do
    echo "$((SECONDS - start)),$(bench_rss_kb "$pid"),$(bench_huge_kb "$pid")" >>"$csv"
    sleep 5
  done
  read -r BURST_BACK BURST_LAST_KB BURST_MAX_AFTER_KB BURST_HUGE_KB < <(awk -F, -v idle="$BURST_IDLE_KB" '
    NR > 1 { t[NR] = $1; v[NR] = $2; h[NR] = $3; n = NR }
    END {
      back = -1
      for (i = n; i >= 2; i--) { if (v[i] > idle * 1.25) break; back = t[i] }
      max = 0; for (i = 2; i <= n; i++) if (back >= 0 && t[i] >= back && v[i] > max) max = v[i]
      printf "%d %d %d %d\n", back, v[n], max, h[n]
    }' "$csv")
  # A burst whose batches were not all answered 200 did not put 50 000 jobs through web: its
  # memory says nothing, so it fails too.
  BURST_PASS=0
  if [ "$BURST_OK" = "$bursts" ] && [ "$BURST_BACK" -ge 0 ] && [ "$BURST_BACK" -le 60 ]; then BURST_PASS=1; fi
}
