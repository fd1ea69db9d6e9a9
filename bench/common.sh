# shellcheck shell=bash
# Shared by bench/compare, bench/database and bench/soak (bench/run predates it and stands
# alone). Source it after `set -euo pipefail` and after setting BENCH_NAME; it sets up WORK (a
# temporary directory), the cleanup trap, and helpers to start throwaway PostgreSQL, Redis and
# Portcullis processes on free ports. Every process started here is stopped by its PID, and
# WORK is removed, whatever way the script ends.

export LC_ALL=C   # decimal points in awk/printf output, whatever the caller's locale

BIN=$(realpath -m "${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release/portcullis}")

log() { printf '==> %s\n' "$*" >&2; }
die() { printf '%s: error: %s\n' "${BENCH_NAME:-bench}" "$*" >&2; exit 1; }

need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install $tool)"
    done
}

need_binary() {
    [[ -x "$BIN" ]] ||
        die "$BIN not found; build it first with:  cargo build --release --locked -p portcullis (or set BENCH_BIN)"
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-${BENCH_NAME:-bench}.XXXXXX")
chmod 755 "$WORK"   # the postgres user must reach the data directory below it

# ---------------------------------------------------------------------------------------------
# Processes: every PID we start, stopped in reverse order by the EXIT trap.
PIDS=()
PG_DIR='' PG_STARTED='' PG_PORT=''
REDIS_PORT='' REDIS_PID=''
AS_PG=()

stop_pid() {
    local pid=$1 _
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Removes a PID from the list (its process has ended or been stopped).
forget_pid() {
    local i
    for i in "${!PIDS[@]}"; do
        [[ "${PIDS[$i]}" == "$1" ]] && unset 'PIDS[i]'
    done
    return 0
}

# Stops one PID and forgets it.
stop_process() {
    stop_pid "$1"
    forget_pid "$1"
}

pg() { (cd "$PG_DIR" && "${AS_PG[@]}" "$PG_BIN/$1" "${@:2}"); }

# Every process started from this script that is still running (children, their children…),
# found by parent PID.
descendants() {
    local child
    for child in $(pgrep -P "$1" 2>/dev/null); do
        descendants "$child"
        echo "$child"
    done
}

# Runs a command (or shell function) in the background and waits for it: a signal then
# interrupts the wait at once, where bash would hold its trap until a foreground command ended.
in_background() {
    "$@" &
    wait "$!"
}

# shellcheck disable=SC2317  # reached through the trap
bench_cleanup() {
    local rc=$? i pid
    set +e
    # The servers and drivers we track, newest first, each given time to stop; then anything
    # else still running below this shell (a wrk or a driver interrupted mid-run).
    local pids=("${PIDS[@]}")
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        stop_pid "${pids[$i]}"
    done
    for pid in $(descendants $$); do
        kill -TERM "$pid" 2>/dev/null
    done
    if [[ -n "$REDIS_PID" ]]; then
        stop_pid "$REDIS_PID"
    fi
    if [[ -n "$PG_STARTED" ]]; then
        # Immediate: the data is thrown away, so no shutdown checkpoint (which, with fsync on,
        # can take many seconds).
        pg pg_ctl -D "$PG_DIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' ||
        die "python3 could not pick a free port"
}

# N random characters from [A-Za-z0-9] (no escaping needed in Basic auth or on a command line).
random_alnum() {
    local out=''
    while ((${#out} < $1)); do
        out+=$(openssl rand -base64 96 | tr -dc 'A-Za-z0-9')
    done
    printf '%s' "${out:0:$1}"
}

http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time "${2:-2}" "$1" || true; }

# ---------------------------------------------------------------------------------------------
# PostgreSQL 15, throwaway: initdb into WORK, as the `postgres` user when we are root (it
# refuses to run as root). Server settings are PostgreSQL's defaults (fsync and synchronous
# commit on, as in production) plus BENCH_PG_OPTIONS. Sets PG_PORT and PG_URL (database
# `portcullis`).
PG_BIN=''
find_pg_bin() {
    local initdb dir
    if initdb=$(command -v initdb) && command -v pg_ctl >/dev/null; then
        PG_BIN=$(dirname "$(realpath "$initdb")")
        return 0
    fi
    for dir in /usr/lib/postgresql/15/bin $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then PG_BIN=$dir; return 0; fi
    done
    return 1
}

start_postgres() {
    find_pg_bin || die "initdb/pg_ctl not found (Debian: apt-get install postgresql-15)"
    need_tools psql
    PG_DIR="$WORK/postgres"
    mkdir -p "$PG_DIR"
    if [[ "$(id -u)" -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root and there is no 'postgres' user to run PostgreSQL as"
        chown postgres: "$PG_DIR"
        AS_PG=(runuser -u postgres --)
    fi
    if ! pg initdb -D "$PG_DIR/data" -A trust -U postgres -E UTF8 --locale=C --no-sync \
        >"$PG_DIR/initdb.log" 2>&1; then
        cat "$PG_DIR/initdb.log" >&2
        die "initdb failed (output above)"
    fi
    local attempt
    PG_STARTED=1
    for attempt in 1 2 3; do
        PG_PORT=$(free_port)
        # shellcheck disable=SC2086  # BENCH_PG_OPTIONS is a list of -c options
        if pg pg_ctl -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 60 start -o \
            "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 ${BENCH_PG_OPTIONS:-}" \
            >/dev/null 2>&1; then
            psql -X -q -v ON_ERROR_STOP=1 "postgres://postgres@127.0.0.1:$PG_PORT/postgres" \
                -c 'CREATE DATABASE portcullis' >/dev/null ||
                die "could not create the database portcullis"
            # No GSSAPI: nothing here uses Kerberos, and with libpq's default (gssencmode=prefer)
            # a CLI command on PostgreSQL once aborted at exit in libkrb5 (k5_mutex_lock error
            # 22, assertion failed) after doing its work.
            PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/portcullis?gssencmode=disable"
            log "PostgreSQL $(pg postgres --version | awk '{ print $3 }'): $PG_URL${BENCH_PG_OPTIONS:+ (options: $BENCH_PG_OPTIONS)}"
            return 0
        fi
        log "PostgreSQL did not start on port $PG_PORT (attempt $attempt)"
    done
    tail -n 20 "$PG_DIR/log" >&2 2>/dev/null || true
    die "pg_ctl start failed (log above)"
}

# One SQL value from the benchmark database.
pg_value() {
    psql -X -q -A -t -v ON_ERROR_STOP=1 "$PG_URL" -c "$1"
}

# Committed and rolled-back transactions of the database so far, as "commits rollbacks".
# PostgreSQL 15's backends publish their counters at most once a second, and an idle backend
# (the server's pooled connections after a run) only after 10 s: so wait
# BENCH_PG_STATS_SETTLE (default 11 s) first, before and after a measured run alike.
pg_xacts() {
    sleep "${BENCH_PG_STATS_SETTLE:-11}"
    pg_value "SELECT xact_commit || ' ' || xact_rollback FROM pg_stat_database WHERE datname = 'portcullis'"
}

# ---------------------------------------------------------------------------------------------
# Redis, throwaway, in the foreground as our child (so its PID is ours). Sets REDIS_PORT and
# REDIS_URL.
start_redis() {
    need_tools redis-server redis-cli
    local attempt dir="$WORK/redis" _
    mkdir -p "$dir"
    for attempt in 1 2 3; do
        REDIS_PORT=$(free_port)
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$dir" --logfile "$dir/log" &
        REDIS_PID=$!
        for _ in $(seq 50); do
            if [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; then
                REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
                log "Redis $(redis-server --version | awk '{ print $3 }' | sed 's/v=//'): $REDIS_URL"
                return 0
            fi
            kill -0 "$REDIS_PID" 2>/dev/null || break
            sleep 0.1
        done
        stop_pid "$REDIS_PID"
        REDIS_PID=''
        log "Redis did not answer on port $REDIS_PORT (attempt $attempt)"
    done
    tail -n 20 "$dir/log" >&2 2>/dev/null || true
    die "redis-server did not start (log above)"
}

# ---------------------------------------------------------------------------------------------
# Portcullis. portcullis_env DIR PORT DATABASE_URL: the settings shared by the server and the
# CLI (so both use the same database and KEK). Callers export more PORTCULLIS_* afterwards.
portcullis_env() {
    local dir=$1 port=$2 database=$3
    mkdir -p "$dir"
    export PORTCULLIS_DATABASE_URL="$database"
    export PORTCULLIS_BIND="127.0.0.1:$port"
    export PORTCULLIS_ISSUER="http://127.0.0.1:$port"
    export PORTCULLIS_KEY_ENCRYPTION_KEY
    PORTCULLIS_KEY_ENCRYPTION_KEY=$(openssl rand -base64 32)
    export RUST_LOG="${BENCH_RUST_LOG:-info}"
    # Stop at once on SIGTERM: no load balancer to drain here (the default waits 5 s).
    export PORTCULLIS_SHUTDOWN_DELAY=0
    PC_DIR=$dir
    PC_URL="http://127.0.0.1:$port"
}

pc_fail() {
    printf '%s: error: %s\n--- last lines of %s ---\n' "${BENCH_NAME:-bench}" "$1" "$PC_DIR/server.log" >&2
    tail -n 30 "$PC_DIR/server.log" >&2 || true
    exit 1
}

# Starts `portcullis serve` with the current environment, from PC_DIR (so no data/ or keys/
# lands in the checkout), and waits for /healthz. Sets PC_PID.
start_portcullis() {
    local _
    (cd "$PC_DIR" && exec "$BIN" serve) >>"$PC_DIR/server.log" 2>&1 &
    PC_PID=$!
    PIDS+=("$PC_PID")
    for _ in $(seq 150); do
        [[ "$(http_status "$PC_URL/healthz" 1)" == 200 ]] && return 0
        kill -0 "$PC_PID" 2>/dev/null || pc_fail "the server exited during start-up"
        sleep 0.1
    done
    pc_fail "no 200 from $PC_URL/healthz after 15 s"
}

stop_portcullis() {
    [[ -n "${PC_PID:-}" ]] || return 0
    stop_process "$PC_PID"
    PC_PID=''
}

# The CLI with the server's settings; its output goes to stdout, a failure stops the script.
pc_cli() {
    local out="$PC_DIR/cli.log"
    if ! (cd "$PC_DIR" && "$BIN" "$@") 2>>"$out"; then
        tail -n 20 "$out" >&2
        die "portcullis $* failed (stderr above, in $out)"
    fi
}

# Waits until a client created with the CLI is known to the server (it may pick it up on its
# next poll): POST /token with client credentials until the status is not 401.
wait_for_client() {
    local basic=$1 body=$2 status _
    for _ in $(seq 60); do
        status=$(curl -s -o "$PC_DIR/probe" -w '%{http_code}' --max-time 5 \
            -H "Authorization: Basic $basic" --data "$body" "$PC_URL/token" || true)
        [[ "$status" != 401 && "$status" != 000 ]] && return 0
        sleep 0.5
    done
    pc_fail "the server did not accept the new client within 30 s (last status $status: $(head -c 300 "$PC_DIR/probe"))"
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# shellcheck disable=SC2034  # used by the scripts that source this file
CLK_TCK=$(getconf CLK_TCK)
# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# ---------------------------------------------------------------------------------------------
# Column "sign/s" of `openssl speed` output, located through the header line because OpenSSL
# 3.2+ adds encrypt/decrypt columns after it (as in bench/run).
parse_openssl_sign() {
    awk -v pat="$1" '
        /sign\/s/ { for (i = 1; i <= NF; i++) if ($i == "sign/s") from_end = NF - i }
        $0 ~ pat && from_end != "" { v = $(NF - from_end) }
        END { if (v == "") exit 1; print v }'
}

openssl_ecdsa_sign_rate() {
    local out="$WORK/openssl-ecdsap256.txt"
    openssl speed -seconds "${BENCH_OPENSSL_SECONDS:-5}" ecdsap256 >"$out" 2>/dev/null
    parse_openssl_sign 'ecdsa \(nistp256\)' <"$out" ||
        die "could not read sign/s from openssl speed ecdsap256: $(cat "$out")"
}

# wrk output -> "requests_per_s p99_ms requests errors" (as in bench/run): errors = wrk's own
# count of non-2xx/3xx responses + socket errors; the rate counts only the good responses.
parse_wrk() {
    awk '
        function ms(v) {
            sub(/,$/, "", v)
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
            if (v ~ /m$/)  return substr(v, 1, length(v) - 1) * 60000
            if (v ~ /h$/)  return substr(v, 1, length(v) - 1) * 3600000
            return v
        }
        $1 == "99%"                       { p99 = ms($2) }
        / requests in /                   { requests = $1; secs = ms($4) / 1000 }   # "15.02s" or "1.00m"
        /^ *Socket errors:/               { for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) sockerr += $i }
        /^ *Non-2xx or 3xx responses:/    { non2xx = $NF }
        END {
            bad = non2xx + 0
            if (secs == "" || secs == 0) exit 1
            printf "%.0f %.2f %d %d\n", (requests - bad) / secs, p99, requests, bad + sockerr
        }'
}

# Median of numbers on stdin (the lower middle one for an even count, as bench/run).
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

describe_run() {
    echo "- checkout: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- server migrations 2>/dev/null || echo ' (server/ or migrations/ with local changes)')"
    echo "- binary: $BIN ($("$BIN" --version 2>/dev/null || echo 'version unknown'), built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC'))"
    echo "- machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr)"
}
