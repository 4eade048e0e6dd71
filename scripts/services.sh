#!/usr/bin/env bash
# Start, stop or check the local source servers: PostgreSQL (Debian's packages) and FerretDB
# (MongoDB wire protocol on SQLite, standing in for AWS DocumentDB). Loopback only, idempotent.
#
#   scripts/services.sh start|stop|status|purge
#
# As root, PostgreSQL runs as the `postgres` OS user (it refuses to run as root). When that user
# cannot enter the services directory (a clone under a home directory of mode 700, say),
# PostgreSQL's directory goes to that user's home instead, one per services directory:
# ~postgres/financial_assets-<first 12 hex digits of the SHA-256 of the services directory's path>
# (/var/lib/postgresql/... on Debian), and <services dir>/postgres is a symbolic link to it.
# `purge` stops the servers and deletes their data, that directory included (`make clean`).
#
# Environment (the same names as financial_assets/settings.py):
#   FIN_SERVICES_DIR   data, logs and pid files          (default <repo>/var/services)
#   FIN_CACHE_DIR      where the FerretDB binary is kept (default <repo>/.cache)
#   FIN_POSTGRES_PORT  default 25432;  FIN_MONGO_PORT  default 27117
#   FIN_POSTGRES_URL / FIN_MONGO_URL   bring your own server: the local one is left alone
#
# `status` exits 0 when every local service runs, 3 otherwise.
set -euo pipefail

REPO_ROOT="$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FERRETDB_VERSION=v1.24.2
PG_MAX_WAL_SIZE=2GB
PG_MAX_CONNECTIONS=400

die() {
    echo "$*" >&2
    exit 1
}

usage() {
    die "usage: scripts/services.sh start|stop|status|purge"
}

trim() {
    local value="$1"
    value="${value#"${value%%[![:space:]]*}"}"
    value="${value%"${value##*[![:space:]]}"}"
    printf '%s' "$value"
}

port_setting() {  # NAME DEFAULT
    local raw
    raw="$(trim "${!1:-}")"
    if [[ -z "$raw" ]]; then
        echo "$2"
    elif [[ "$raw" =~ ^[0-9]{1,5}$ ]] && ((10#$raw > 0 && 10#$raw < 65536)); then
        echo "$((10#$raw))"
    else
        die "$1 must be a TCP port number (1-65535), got '$raw'"
    fi
}

absolute_path() {  # a path made absolute against the current directory, symlinks resolved if it exists
    local path="$1"
    [[ "$path" == /* ]] || path="$PWD/$path"
    if [[ -d "$path" ]]; then
        (cd -P "$path" && pwd)
    else
        printf '%s' "$path"
    fi
}

SERVICES_DIR="$(trim "${FIN_SERVICES_DIR:-}")"
SERVICES_DIR="${SERVICES_DIR:-$REPO_ROOT/var/services}"
CACHE_DIR="$(trim "${FIN_CACHE_DIR:-}")"
CACHE_DIR="$(absolute_path "${CACHE_DIR:-$REPO_ROOT/.cache}")"
PG_PORT="$(port_setting FIN_POSTGRES_PORT 25432)"
MONGO_PORT="$(port_setting FIN_MONGO_PORT 27117)"
USE_PG_URL="$(trim "${FIN_POSTGRES_URL:-}")"
USE_MONGO_URL="$(trim "${FIN_MONGO_URL:-}")"

set_paths() {
    # Canonical paths: a running server is recognised by its working directory (PostgreSQL)
    # or its command line (FerretDB), which hold the resolved path.
    SERVICES_DIR="$(absolute_path "$SERVICES_DIR")"
    PG_LINK="$SERVICES_DIR/postgres"
    if [[ -L "$PG_LINK" ]]; then
        # PostgreSQL's directory kept where the `postgres` OS user can reach it (see the top).
        set_pg_dir "$(readlink "$PG_LINK")"
    else
        set_pg_dir "$PG_LINK"
    fi
    FDB_DIR="$SERVICES_DIR/ferretdb"
    FDB_DATA="$FDB_DIR/data"
    FDB_STATE="$FDB_DIR/state"
    FDB_LOG="$FDB_DIR/ferretdb.log"
    FDB_PIDFILE="$FDB_DIR/ferretdb.pid"
    FDB_BIN="$CACHE_DIR/ferretdb-$FERRETDB_VERSION/ferretdb"
}

set_pg_dir() {  # DIR: PostgreSQL's directory and the paths inside it
    PG_DIR="$(absolute_path "$1")"
    PG_DATA="$PG_DIR/data"
    PG_SOCKET_DIR="$PG_DIR/run"
    PG_LOG="$PG_DIR/postgres.log"
}

shown() {  # a path as printed: relative to the repository when inside it
    case "$1" in
        "$REPO_ROOT"/*) printf '%s' "${1#"$REPO_ROOT"/}" ;;
        *) printf '%s' "$1" ;;
    esac
}

print_log_tail() {  # LOGFILE
    if [[ -s "$1" ]]; then
        echo "--- last lines of $(shown "$1") ---" >&2
        tail -n 20 "$1" >&2
    fi
}

is_root() {
    [[ "$(id -u)" == 0 ]]
}

# --- processes and ports --------------------------------------------------------------------

alive() {  # PID: the process exists and is not a zombie (a killed orphan lingers until reaped)
    local state
    [[ -r "/proc/$1/stat" ]] || return 1
    state="$(sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

port_answers() {  # PORT: something accepts TCP connections on 127.0.0.1:PORT
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

wait_until_gone() {  # SECONDS PID...
    local deadline=$((SECONDS + $1)) pid
    shift
    while ((SECONDS < deadline)); do
        for pid in "$@"; do
            if alive "$pid"; then
                sleep 0.2
                continue 2
            fi
        done
        return 0
    done
    return 1
}

# Serialise concurrent runs on one FIN_SERVICES_DIR (e.g. parallel test workers). Servers are
# started with fd 9 closed so that they never hold the lock.
take_lock() {
    exec 9>>"$SERVICES_DIR/.services.lock"
    flock -w 300 9 || die "services: another scripts/services.sh is still running on $(shown "$SERVICES_DIR")"
}

# --- PostgreSQL -----------------------------------------------------------------------------

PG_BIN=""

pg_pid() {  # prints the PID of the postmaster running on our data dir, if any
    local pid comm cwd
    [[ -r "$PG_DATA/postmaster.pid" ]] || return 1
    pid="$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [[ "$comm" == postgres || "$comm" == postmaster ]] || return 1
    # The postmaster runs in its data directory: this tells ours from any other cluster.
    cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null)" || return 1
    [[ "$cwd" == "$PG_DATA" ]] || return 1
    echo "$pid"
}

pg_running_port() {  # PID: the port it was started on (line 4 of postmaster.pid)
    sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null
}

pg_leftover_pids() {  # processes still working in our data dir, e.g. backends of a killed postmaster
    local proc
    for proc in /proc/[0-9]*; do
        if [[ "$(readlink "$proc/cwd" 2>/dev/null)" == "$PG_DATA" ]] && alive "${proc#/proc/}"; then
            echo "${proc#/proc/}"
        fi
    done
}

as_pg_user() {  # PostgreSQL refuses to run as root: as root, run as the `postgres` OS user
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pg_bin_usable() {
    [[ -x "$1/initdb" && -x "$1/pg_ctl" && -x "$1/postgres" ]]
}

find_pg_bin() {
    local dir version
    if [[ -f "$PG_DATA/PG_VERSION" ]]; then
        # An existing cluster needs the server of its own major version.
        version="$(cat "$PG_DATA/PG_VERSION")"
        dir="/usr/lib/postgresql/$version/bin"
        pg_bin_usable "$dir" || die "postgres: $(shown "$PG_DATA") was created by PostgreSQL $version, which is not installed; install postgresql-$version or remove $(shown "$PG_DIR")"
        PG_BIN="$dir"
        return 0
    fi
    # The highest installed major version (9.6 < 10 < 16: sorted as versions).
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4,4 -V -r); do
        if pg_bin_usable "$dir"; then
            PG_BIN="$dir"
            return 0
        fi
    done
    return 1
}

install_postgres() {
    local log="$SERVICES_DIR/apt-postgresql.log"
    is_root || die "postgres: PostgreSQL is not installed; install the Debian package 'postgresql' (apt-get install postgresql) or set FIN_POSTGRES_URL"
    echo "postgres: installing Debian's postgresql package..."
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; } >"$log" 2>&1 9>&-; then
        echo "postgres: apt-get install postgresql failed (log: $(shown "$log"))" >&2
        print_log_tail "$log"
        exit 1
    fi
    find_pg_bin || die "postgres: the postgresql package is installed but no /usr/lib/postgresql/*/bin has initdb, pg_ctl and postgres"
}

pg_user_can_enter() {  # DIR
    runuser -u postgres -- test -x "$1" 2>/dev/null
}

pg_user_home() {
    local home
    home="$(getent passwd postgres | cut -d: -f6)"
    [[ -n "$home" && -d "$home" ]] && pg_user_can_enter "$home" \
        || die "postgres: the 'postgres' OS user has no home directory it can enter ('$home') to keep the data of $(shown "$SERVICES_DIR") in"
    absolute_path "$home"
}

external_pg_dir() {  # where PostgreSQL's directory goes when `postgres` cannot enter SERVICES_DIR
    local home hash
    home="$(pg_user_home)"
    hash="$(printf '%s' "$SERVICES_DIR" | sha256sum | cut -c1-12)"
    printf '%s/financial_assets-%s' "$home" "$hash"
}

place_pg_dir() {  # as root: the server runs as `postgres`, which must reach PG_DIR
    local path="" part parts external
    id postgres >/dev/null 2>&1 || die "postgres: running as root needs the 'postgres' OS user (created by Debian's postgresql package)"
    if [[ ! -e "$PG_LINK" && ! -L "$PG_LINK" ]] && ! pg_user_can_enter "$SERVICES_DIR"; then
        # A first start where `postgres` cannot follow: keep the cluster in its home, and leave
        # a link in the services directory so that stop, status and purge find it.
        external="$(external_pg_dir)"
        mkdir -p "$external"
        chown postgres: "$external"
        chmod 700 "$external"
        # Whose directory it is, for a person who finds it, and for purge, which checks it.
        printf '%s\n' "$SERVICES_DIR" >"$external/services_dir"
        ln -s "$external" "$PG_LINK"
        set_pg_dir "$external"
        echo "postgres: the 'postgres' OS user cannot enter $SERVICES_DIR: keeping PostgreSQL's data in $PG_DIR"
    fi
    pg_user_can_enter "$PG_DIR" && return 0
    # A cluster made in place earlier, or a link to a directory that is gone: say what blocks it.
    IFS=/ read -r -a parts <<<"${PG_DIR#/}"
    for part in "${parts[@]}"; do
        path="$path/$part"
        [[ -e "$path" ]] || break
        if ! pg_user_can_enter "$path"; then
            die "postgres: the 'postgres' OS user cannot enter $path (chmod o+x it, or use a FIN_SERVICES_DIR it can reach)"
        fi
    done
}

sql_literal() {
    printf "'%s'" "${1//\'/\'\'}"
}

write_pg_config() {
    # Rewritten at every start so the port and paths follow the current settings.
    local conf="$PG_DATA/fin_services.conf"
    {
        echo "# Written by scripts/services.sh at every start; edits here are lost."
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $PG_PORT"
        echo "unix_socket_directories = $(sql_literal "$PG_SOCKET_DIR")"
        echo "max_wal_size = $PG_MAX_WAL_SIZE"
        # Every Iceberg catalog a process opens (PyIceberg's pool, each Spark catalog's JDBC
        # client) holds a connection to the catalog database: the test suite opens many.
        echo "max_connections = $PG_MAX_CONNECTIONS"
    } >"$conf"
    chmod 600 "$conf"
    if is_root; then chown postgres: "$conf"; fi
}

init_pg() {
    local tmp="$PG_DIR/data.initdb"
    echo "postgres: creating a cluster in $(shown "$PG_DATA") (once)"
    rm -rf "$tmp"
    # initdb into a temporary directory, moved into place when complete, so that an interrupted
    # initdb never leaves a half-made cluster behind.
    if ! as_pg_user "$PG_BIN/initdb" -D "$tmp" --username=financial --auth=trust \
        --encoding=UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1 9>&-; then
        echo "postgres: initdb failed (log: $(shown "$PG_DIR/initdb.log"))" >&2
        print_log_tail "$PG_DIR/initdb.log"
        exit 1
    fi
    echo "include_if_exists = 'fin_services.conf'" >>"$tmp/postgresql.conf"
    mv "$tmp" "$PG_DATA"
}

# The source database, and the Iceberg catalog's own (FIN_CATALOG_URL's default).
PG_DATABASES=(financial lakehouse_catalog)

ensure_pg_database() {
    local database exists
    for database in "${PG_DATABASES[@]}"; do
        exists="$(PGCONNECT_TIMEOUT=10 "$PG_BIN/psql" -X -q -t -A -h 127.0.0.1 -p "$PG_PORT" -U financial -d postgres \
            -c "SELECT 1 FROM pg_database WHERE datname = '$database'" 2>&1)" \
            || die "postgres: cannot query the server on 127.0.0.1:$PG_PORT: $exists"
        if [[ "$exists" != 1 ]]; then
            PGCONNECT_TIMEOUT=10 "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U financial -d postgres \
                -v ON_ERROR_STOP=1 -c "CREATE DATABASE $database OWNER financial" >/dev/null \
                || die "postgres: could not create the database '$database'"
        fi
    done
}

start_postgres() {
    local pid port leftovers
    if [[ -n "$USE_PG_URL" ]]; then
        echo "postgres: using FIN_POSTGRES_URL, not starting a local server"
        return 0
    fi
    if pid="$(pg_pid)"; then
        port="$(pg_running_port)"
        if [[ "$port" != "$PG_PORT" ]]; then
            die "postgres: already running on 127.0.0.1:$port, not on FIN_POSTGRES_PORT=$PG_PORT; run 'scripts/services.sh stop' first"
        fi
        PG_BIN="$(dirname "$(readlink "/proc/$pid/exe")")"
        [[ -x "$PG_BIN/psql" ]] || find_pg_bin || die "postgres: psql not found"
        ensure_pg_database
        echo "postgres: already running on 127.0.0.1:$PG_PORT"
        return 0
    fi
    find_pg_bin || install_postgres
    if port_answers "$PG_PORT"; then
        die "postgres: port 127.0.0.1:$PG_PORT is already in use by another process; stop it or set FIN_POSTGRES_PORT"
    fi
    if is_root; then place_pg_dir; fi
    if ((${#PG_SOCKET_DIR} + 18 > 107)); then
        die "postgres: the socket directory $PG_SOCKET_DIR is too long for a Unix socket path; use a shorter FIN_SERVICES_DIR"
    fi

    mkdir -p "$PG_DIR"
    chmod 700 "$PG_DIR"
    if is_root; then chown postgres: "$PG_DIR"; fi
    [[ -f "$PG_DATA/PG_VERSION" ]] || init_pg
    mkdir -p "$PG_SOCKET_DIR"
    if is_root && [[ "$(stat -c %U "$PG_DATA")" != postgres ]]; then
        chown -R postgres: "$PG_DATA"
    fi
    if is_root; then chown postgres: "$PG_SOCKET_DIR" "$PG_DIR"; fi

    if [[ -e "$PG_DATA/postmaster.pid" ]]; then
        # Left by a server that is gone (kill -9, machine restart). Its backends notice the
        # postmaster's death and exit by themselves; give them a moment before starting anew.
        leftovers="$(pg_leftover_pids)"
        if [[ -n "$leftovers" ]]; then
            # shellcheck disable=SC2086
            wait_until_gone 15 $leftovers \
                || die "postgres: processes of a previous server still use $(shown "$PG_DATA"): ${leftovers//$'\n'/ }; stop them first"
        fi
        rm -f "$PG_DATA/postmaster.pid"
    fi
    # Likewise the socket lock files. PostgreSQL would accept them when their PID is gone, but
    # takes a PID that is reused or a not yet reaped zombie for a live server. The directory is
    # this cluster's alone, and no server of ours runs (checked above).
    rm -f "$PG_SOCKET_DIR"/.s.PGSQL.*
    write_pg_config

    if ! as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null 2>&1 9>&-; then
        echo "postgres: failed to start on 127.0.0.1:$PG_PORT (log: $(shown "$PG_LOG"))" >&2
        print_log_tail "$PG_LOG"
        exit 1
    fi
    ensure_pg_database
    echo "postgres: started on 127.0.0.1:$PG_PORT (data: $(shown "$PG_DIR"))"
}

stop_postgres() {
    local pid bin
    if [[ -n "$USE_PG_URL" ]]; then
        echo "postgres: using FIN_POSTGRES_URL, not stopping a local server"
        return 0
    fi
    if ! pid="$(pg_pid)"; then
        echo "postgres: not running"
        return 0
    fi
    # pg_ctl of the version that runs, whatever is installed now.
    bin="$(dirname "$(readlink "/proc/$pid/exe")")"
    [[ -x "$bin/pg_ctl" ]] || { find_pg_bin && bin="$PG_BIN"; } || die "postgres: pg_ctl not found to stop PID $pid"
    if ! as_pg_user "$bin/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null 2>&1 9>&-; then
        echo "postgres: pg_ctl stop failed (log: $(shown "$PG_LOG"))" >&2
        print_log_tail "$PG_LOG"
        exit 1
    fi
    echo "postgres: stopped"
}

status_postgres() {
    local pid port
    if [[ -n "$USE_PG_URL" ]]; then
        echo "postgres: using FIN_POSTGRES_URL, no local server"
        return 0
    fi
    if ! pid="$(pg_pid)"; then
        echo "postgres: stopped"
        return 1
    fi
    port="$(pg_running_port)"
    if ! port_answers "$port"; then
        echo "postgres: PID $pid runs but 127.0.0.1:$port does not answer (log: $(shown "$PG_LOG"))"
        return 1
    fi
    echo "postgres: running on 127.0.0.1:$port (pid $pid, data: $(shown "$PG_DIR"))"
}

# --- FerretDB -------------------------------------------------------------------------------

ferretdb_pid() {  # prints the PID from the pid file if it is our FerretDB, else fails
    local pid argv
    [[ -r "$FDB_PIDFILE" ]] || return 1
    pid="$(head -n 1 "$FDB_PIDFILE" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    # A PID can be reused after a kill -9 or a reboot: it must be a ferretdb on our data.
    argv="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$(basename "$(head -n 1 <<<"$argv")")" == ferretdb* ]] || return 1
    grep -qxF -- "--sqlite-url=file:$FDB_DATA/" <<<"$argv" || return 1
    echo "$pid"
}

ferretdb_running_port() {  # PID
    tr '\0' '\n' <"/proc/$1/cmdline" | sed -n 's/^--listen-addr=127\.0\.0\.1://p'
}

find_go() {
    if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
        PATH="/usr/local/go/bin:$PATH"
    fi
    command -v go >/dev/null 2>&1 \
        || die "ferretdb: Go is needed to build FerretDB $FERRETDB_VERSION once (install it, e.g. to /usr/local/go), or set FIN_MONGO_URL"
}

build_ferretdb() {
    # Why not just `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`: the module is
    # published without its generated build/version/version.txt, and a binary built from it
    # panics at start ("Invalid build/version/version.txt file content. Please run bin/task
    # gen-version."). So, as FerretDB's own build does: take the module's source, write the
    # version file, and build. The binary is built under a temporary name and renamed into
    # place, so that an interrupted build never leaves a broken binary behind.
    local dest build src log
    dest="$(dirname "$FDB_BIN")"
    mkdir -p "$dest"
    exec 8>>"$CACHE_DIR/.ferretdb-build.lock"
    flock -w 900 8 || die "ferretdb: another build of FerretDB is still running in $(shown "$CACHE_DIR")"
    if "$FDB_BIN" --version >/dev/null 2>&1; then  # built by another run while we waited
        exec 8>&-
        return 0
    fi
    find_go
    echo "ferretdb: building $FERRETDB_VERSION (once, about a minute)..."
    build="$(mktemp -d "$CACHE_DIR/ferretdb-build.XXXXXX")"
    # shellcheck disable=SC2064
    trap "chmod -R u+w '$build' 2>/dev/null; rm -rf '$build' '$dest/.ferretdb.tmp.$$'" EXIT
    log="$build/build.log"
    if ! src="$(cd "$build" && go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" 2>"$log" \
        | sed -n 's/^[[:space:]]*"Dir":[[:space:]]*"\(.*\)",\{0,1\}$/\1/p')" || [[ -z "$src" || ! -d "$src" ]]; then
        echo "ferretdb: could not download the FerretDB $FERRETDB_VERSION module" >&2
        print_log_tail "$log"
        exit 1
    fi
    cp -R "$src" "$build/src"
    chmod -R u+w "$build/src"  # the module cache is read-only
    echo "$FERRETDB_VERSION" >"$build/src/build/version/version.txt"
    if ! (cd "$build/src" && go build -trimpath -buildvcs=false -o "$dest/.ferretdb.tmp.$$" ./cmd/ferretdb) >>"$log" 2>&1 9>&- 8>&-; then
        echo "ferretdb: go build of FerretDB $FERRETDB_VERSION failed" >&2
        print_log_tail "$log"
        exit 1
    fi
    "$dest/.ferretdb.tmp.$$" --version >/dev/null 2>&1 || die "ferretdb: the freshly built binary does not run ('ferretdb --version' fails)"
    mv -f "$dest/.ferretdb.tmp.$$" "$FDB_BIN"
    chmod -R u+w "$build" 2>/dev/null || true
    rm -rf "$build"
    trap - EXIT
    exec 8>&-
}

start_ferretdb() {
    local pid port deadline
    if [[ -n "$USE_MONGO_URL" ]]; then
        echo "ferretdb: using FIN_MONGO_URL, not starting a local server"
        return 0
    fi
    if pid="$(ferretdb_pid)"; then
        port="$(ferretdb_running_port "$pid")"
        if [[ "$port" != "$MONGO_PORT" ]]; then
            die "ferretdb: already running on 127.0.0.1:$port, not on FIN_MONGO_PORT=$MONGO_PORT; run 'scripts/services.sh stop' first"
        fi
        echo "ferretdb: already running on 127.0.0.1:$MONGO_PORT"
        return 0
    fi
    rm -f "$FDB_PIDFILE"  # stale: the process is gone, or the PID now belongs to another program
    "$FDB_BIN" --version >/dev/null 2>&1 || build_ferretdb
    if port_answers "$MONGO_PORT"; then
        die "ferretdb: port 127.0.0.1:$MONGO_PORT is already in use by another process; stop it or set FIN_MONGO_PORT"
    fi
    mkdir -p "$FDB_DATA" "$FDB_STATE"
    # --debug-addr=- turns off the debug HTTP listener (default 127.0.0.1:8088), which would
    # collide between two instances. setsid detaches the server from this shell's session.
    setsid "$FDB_BIN" \
        --handler=sqlite \
        --sqlite-url="file:$FDB_DATA/" \
        --listen-addr="127.0.0.1:$MONGO_PORT" \
        --debug-addr=- \
        --telemetry=disable \
        --state-dir="$FDB_STATE" \
        --log-level=warn \
        </dev/null >>"$FDB_LOG" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$FDB_PIDFILE"
    deadline=$((SECONDS + 30))
    until port_answers "$MONGO_PORT"; do
        if ! alive "$pid" || ((SECONDS >= deadline)); then
            kill -KILL "$pid" 2>/dev/null || true
            rm -f "$FDB_PIDFILE"
            echo "ferretdb: failed to start on 127.0.0.1:$MONGO_PORT (log: $(shown "$FDB_LOG"))" >&2
            print_log_tail "$FDB_LOG"
            exit 1
        fi
        sleep 0.2
    done
    echo "ferretdb: started on 127.0.0.1:$MONGO_PORT (data: $(shown "$FDB_DIR"))"
}

stop_ferretdb() {
    local pid
    if [[ -n "$USE_MONGO_URL" ]]; then
        echo "ferretdb: using FIN_MONGO_URL, not stopping a local server"
        return 0
    fi
    if ! pid="$(ferretdb_pid)"; then
        rm -f "$FDB_PIDFILE"
        echo "ferretdb: not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until_gone 10 "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        wait_until_gone 5 "$pid" || die "ferretdb: PID $pid did not exit after SIGKILL"
    fi
    rm -f "$FDB_PIDFILE"
    echo "ferretdb: stopped"
}

status_ferretdb() {
    local pid port
    if [[ -n "$USE_MONGO_URL" ]]; then
        echo "ferretdb: using FIN_MONGO_URL, no local server"
        return 0
    fi
    if ! pid="$(ferretdb_pid)"; then
        echo "ferretdb: stopped"
        return 1
    fi
    port="$(ferretdb_running_port "$pid")"
    if ! port_answers "$port"; then
        echo "ferretdb: PID $pid runs but 127.0.0.1:$port does not answer (log: $(shown "$FDB_LOG"))"
        return 1
    fi
    echo "ferretdb: running on 127.0.0.1:$port (pid $pid, data: $(shown "$FDB_DIR"))"
}

# --- purge ----------------------------------------------------------------------------------

purge() {  # after stop: delete the servers' data, and only what this script made
    local external=""
    if [[ -L "$PG_LINK" ]]; then
        external="$(readlink "$PG_LINK")"
        # Only a directory this script made (see place_pg_dir), never whatever a link names.
        if [[ "$(basename "$external")" == financial_assets-* && -e "$external/services_dir" ]]; then
            rm -rf "$external"
        elif [[ -e "$external" ]]; then
            echo "purge: left $external alone: $PG_LINK points to it, but scripts/services.sh did not make it" >&2
        fi
    fi
    rm -rf "$PG_LINK" "$FDB_DIR" "$SERVICES_DIR/apt-postgresql.log" "$SERVICES_DIR/.services.lock"
    rmdir "$SERVICES_DIR" 2>/dev/null || true
    echo "purged ${external:+$external and }$(shown "$SERVICES_DIR")"
}

# --- main -----------------------------------------------------------------------------------

[[ $# -eq 1 ]] || usage
case "$1" in
    start)
        if [[ -z "$USE_PG_URL" || -z "$USE_MONGO_URL" ]]; then
            mkdir -p "$SERVICES_DIR"
            set_paths
            take_lock
        else
            set_paths
        fi
        start_postgres
        start_ferretdb
        ;;
    stop)
        set_paths
        if [[ -d "$SERVICES_DIR" ]]; then take_lock; fi
        stop_postgres
        stop_ferretdb
        ;;
    purge)
        set_paths
        if [[ -d "$SERVICES_DIR" ]]; then take_lock; fi
        # Local servers only: FIN_*_URL name servers whose data is not ours to delete.
        USE_PG_URL="" USE_MONGO_URL=""
        stop_postgres
        stop_ferretdb
        purge
        ;;
    status)
        set_paths
        rc=0
        status_postgres || rc=3
        status_ferretdb || rc=3
        exit "$rc"
        ;;
    *)
        usage
        ;;
esac
