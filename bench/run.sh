#!/usr/bin/env bash
# Benchmarks side by side, each reported next to baselines measured in the same run on the same
# machine: the exchange path (direct to an adapter, through nginx, through the Huitong broker
# with and without its cache, and a static HTTP/2 server as the limit), the broker's memory with
# many open connections, and the exchange log. Writes bench/results.md and bench/results.svg.
# Method and reading of the figures: docs/performance.md.
#
# Usage: bench/run.sh            (defaults take about 3-4 minutes on 2 cores, plus the build)
# Environment, for longer or different runs:
#   BENCH_SECONDS=8          measured seconds per load run
#   BENCH_WARMUP=2           warm-up seconds before each load run
#   BENCH_CONNECTIONS=4      HTTP/2 connections per load run
#   BENCH_CONCURRENCY=16     requests in flight per connection (closed loop)
#   BENCH_RATE=              open-loop rate, requests/s; default half the slowest gRPC setup's
#                            closed-loop maximum
#   BENCH_CONNS=10000        open connections for the broker memory figure
#   BENCH_PERSONS=5000       residents in the demo household register
#   BENCH_LOG_ARGS="--seconds 3"   flags for `huitong bench log` (e.g. --proof-sizes 10000,10000000)
#   BENCH_DIR=target/bench-scratch  scratch directory (on the disk to measure; removed first)
#   BENCH_PROFILE=release    `debug` runs the debug binary for a quick check of the script itself
#   BENCH_SKIP_BUILD=        1: run the binary already in target/<profile> without building
#   BENCH_OUT=bench          where results.md and results.svg go
#
# It needs nginx, h2load and nghttpd (Debian: nginx, nghttp2-client, nghttp2-server) and
# python3; missing packages are installed with apt-get. Any setup that answers with an error
# instead of a record stops the run with a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${BENCH_SECONDS:-8}
warmup=${BENCH_WARMUP:-2}
conns=${BENCH_CONNECTIONS:-4}
conc=${BENCH_CONCURRENCY:-16}
open_conns=${BENCH_CONNS:-10000}
persons=${BENCH_PERSONS:-5000}
profile=${BENCH_PROFILE:-release}
scratch=${BENCH_DIR:-target/bench-scratch}
outdir=${BENCH_OUT:-bench}
# shellcheck disable=SC2206
log_args=(${BENCH_LOG_ARGS:---seconds 3})

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench/run.sh: %s\n' "$*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------------------------
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v nghttpd >/dev/null || [ -x /usr/sbin/nghttpd ] || need+=(nghttp2-server)
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    if [ "$(id -u)" = 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
        die "missing ${need[*]}: install them (apt-get install -y ${need[*]}) or run as root"
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi
PATH=$PATH:/usr/sbin
nginx_bin=$(command -v nginx)
nghttpd_bin=$(command -v nghttpd)

# --- build -----------------------------------------------------------------------------------
if [ -n "${BENCH_SKIP_BUILD:-}" ]; then
    say "using the $profile binary already built"
elif [ "$profile" = release ]; then
    say "building (release)"
    cargo build --release --locked -p huitong
else
    cargo build --locked -p huitong
fi
huitong=$root/target/$profile/huitong
[ -x "$huitong" ] || die "$huitong is not built"

# 10,000 connections need as many descriptors in the broker and in the client.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
fd_limit=$(ulimit -n)

# --- processes -------------------------------------------------------------------------------
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # port name
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    die "$2 did not open port $1"
}

# Starts `huitong ARGS...` in the background; sets `addr` from its "listening on" line.
start_huitong() { # name args...
    local name=$1
    shift
    "$huitong" "$@" >"$scratch/$name.out" 2>"$scratch/$name.err" &
    pids+=($!)
    last_pid=$!
    for _ in $(seq 600); do
        addr=$(sed -n 's/.* listening on //p' "$scratch/$name.out")
        [ -n "$addr" ] && return 0
        kill -0 "$last_pid" 2>/dev/null || die "$name exited: $(tail -5 "$scratch/$name.err")"
        sleep 0.1
    done
    die "$name did not start listening"
}

rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# Other work on the machine skews every figure; the report shows the load averages.
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
rm -rf "$scratch"
mkdir -p "$scratch" "$outdir"
scratch=$(cd "$scratch" && pwd)
results=$scratch/results.jsonl
: >"$results"

# --- the demo exchange -----------------------------------------------------------------------
say "writing the demo exchange ($persons residents)"
ex=$scratch/exchange
"$huitong" demo --init "$ex" --persons "$persons" >/dev/null
pki=$ex/pki
# A second household register over the same records with caching off (max_cache_age_seconds
# = 0): the broker must ask the adapter every time. The demo's own register allows 300 s.
python3 - "$ex" <<'PY'
import re, sys
ex = sys.argv[1]
path = f"{ex}/public-security.toml"
text = open(path, encoding="utf-8").read()
blocks = re.split(r"(?m)^(?=\[\[resources\]\]\n)", text)
reg = next(b for b in blocks if b.startswith('[[resources]]\nname = "household-register"\n'))
live = reg.replace('name = "household-register"', 'name = "household-register-live"', 1)
live = re.sub(r"(?m)^max_cache_age_seconds = \d+", "max_cache_age_seconds = 0", live)
live = re.sub(r"(?m)^stale_if_error_seconds = \d+", "stale_if_error_seconds = 0", live)
live = live.replace("户籍登记 Household register", "户籍登记 Household register (live, never cached)", 1)
open(path, "w", encoding="utf-8").write(text.rstrip("\n") + "\n\n" + live)
with open(f"{ex}/policy.toml", "a", encoding="utf-8") as f:
    f.write('''
# The benchmark's uncached register, under the same grant as the cached one, but allowed to
# search: the search-page run (huitong-search) measures what recording 100 subjects costs.
[[grants]]
consumer = "civil-affairs"
resource = "public-security/household-register-live"
fields = ["name", "gender", "birth_date", "marital_status", "status", "address"]
purposes = ["婚姻登记 marriage registration"]
expires = "2027-12-31"
masks = { address = "address" }
lookup = "search"
''')
PY
person=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["id_number"])' "$ex/household-register.jsonl")
fields=name,gender,birth_date,marital_status
purpose="婚姻登记 marriage registration"

say "starting the adapter and the broker"
start_huitong adapter adapter --config "$ex/public-security.toml" --listen 127.0.0.1:0
adapter=$addr
metrics_port=$(free_port)
cat >"$ex/broker-bench.toml" <<EOF
[broker]
listen = "127.0.0.1:0"
data_dir = "broker-bench-data"
policy = "policy.toml"
metrics_listen = "127.0.0.1:$metrics_port"
# Every client of the benchmark is 127.0.0.1, and the memory row opens $open_conns connections
# from it: the per-address limits against floods would close most of them.
max_connections_per_address = 100000
max_pending_handshakes_per_address = 4096

[tls]
ca = "pki/ca.pem"
cert = "pki/exchange-office-broker.pem"
key = "pki/exchange-office-broker.key"
crl = "pki/crl.pem"

[[adapters]]
dept = "public-security"
endpoint = "https://$adapter"
EOF
start_huitong broker broker --config "$ex/broker-bench.toml" --listen 127.0.0.1:0
broker=$addr
broker_pid=$last_pid
# Idle: started, catalogue loaded, no exchange yet.
for _ in $(seq 100); do
    "$huitong" catalogue --broker "https://$broker" --ca "$pki/ca.pem" \
        --cert "$pki/civil-affairs-consumer.pem" 2>/dev/null | grep -q household-register-live && break
    sleep 0.1
done
sleep 1
rss_idle=$(rss_mib "$broker_pid")

# --- nginx in front of the adapter ----------------------------------------------------------
nginx_tls=$(free_port)
nginx_h2c=$(free_port)
mkdir -p "$scratch/nginx"
user_line=""
[ "$(id -u)" = 0 ] && user_line="user root;"
cat >"$scratch/nginx/nginx.conf" <<EOF
# Written by bench/run.sh. nginx in the broker's place: mutual TLS from the client (or h2c),
# grpcs to the adapter with the broker's certificate.
$user_line
worker_processes auto;
worker_rlimit_nofile 65536;
pid $scratch/nginx/nginx.pid;
error_log $scratch/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $scratch/nginx/body;
    proxy_temp_path $scratch/nginx/proxy;
    fastcgi_temp_path $scratch/nginx/fastcgi;
    uwsgi_temp_path $scratch/nginx/uwsgi;
    scgi_temp_path $scratch/nginx/scgi;
    # nginx opens one upstream connection per concurrent stream; keep them open.
    upstream adapter {
        server $adapter;
        keepalive 512;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
    keepalive_requests 1000000;
    http2_max_concurrent_streams 1024;
    grpc_ssl_certificate $pki/exchange-office-broker.pem;
    grpc_ssl_certificate_key $pki/exchange-office-broker.key;
    grpc_ssl_trusted_certificate $pki/ca.pem;
    grpc_ssl_verify on;
    grpc_ssl_name localhost;
    grpc_ssl_protocols TLSv1.2 TLSv1.3;
    server {
        listen 127.0.0.1:$nginx_tls ssl http2 backlog=4096;
        ssl_certificate $pki/public-security-adapter.pem;
        ssl_certificate_key $pki/public-security-adapter.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_client_certificate $pki/ca.pem;
        ssl_verify_client on;
        location / { grpc_pass grpcs://adapter; }
    }
    server {
        listen 127.0.0.1:$nginx_h2c http2 backlog=4096;
        location / { grpc_pass grpcs://adapter; }
    }
}
EOF
"$nginx_bin" -t -q -c "$scratch/nginx/nginx.conf" -e "$scratch/nginx/error.log" \
    || die "nginx refused its config: $(tail -3 "$scratch/nginx/error.log")"
"$nginx_bin" -c "$scratch/nginx/nginx.conf" -e "$scratch/nginx/error.log" -g 'daemon off;' &
pids+=($!)
wait_port "$nginx_tls" nginx
wait_port "$nginx_h2c" nginx

# --- load runs -------------------------------------------------------------------------------
# load LABEL TARGET ADDR CERT RESOURCE [extra flags...]: one `huitong bench load` run; its JSON
# summary goes to results.jsonl. An answer other than a record stops everything.
load() {
    local label=$1 target=$2 url=$3 cert=$4 resource=$5
    shift 5
    local args=(bench load --label "$label" --target "$target" --addr "$url" --resource "$resource"
        --fields "$fields" --ca "$pki/ca.pem")
    # A search (search=FIELD=VALUE) instead of the key lookup every other run makes.
    if [ -n "${search:-}" ]; then args+=(--filter "$search"); else args+=(--key "id_number=$person"); fi
    [ -n "$cert" ] && args+=(--cert "$pki/$cert")
    [ "$target" = broker ] && args+=(--purpose "$purpose")
    local out
    if ! out=$("$huitong" "${args[@]}" "$@" 2>"$scratch/load.err"); then
        printf '%s\n' "$out" >&2
        cat "$scratch/load.err" >&2
        die "setup '$label' answered with errors instead of records (see above)"
    fi
    printf '%s\n' "$out" | head -n -1 >&2
    [ -n "${check_only:-}" ] || printf '%s\n' "$out" | tail -n 1 >>"$results"
}
shape=(--connections "$conns" --concurrency "$conc" --warmup "${warmup}s" --duration "${seconds}s")
quick=(--connections 1 --concurrency 2 --warmup 0s --duration 500ms)
reg=public-security/household-register
live=public-security/household-register-live

say "closed loop: $conns connections x $conc in flight, ${warmup}s warm-up, ${seconds}s measured"
load direct adapter "https://$adapter" exchange-office-broker.pem "$reg" "${shape[@]}" \
    --save-request "$scratch/request.bin" --save-answer "$scratch/answer.bin"
load nginx-tls adapter "https://127.0.0.1:$nginx_tls" exchange-office-broker.pem "$reg" "${shape[@]}"
load nginx-h2c adapter "http://127.0.0.1:$nginx_h2c" "" "$reg" "${shape[@]}"
# The broker's own metrics before and after each of its runs: where its time goes.
scrape() { curl -sS --max-time 5 "http://127.0.0.1:$metrics_port/metrics" >"$scratch/metrics-$1.txt"; }
scrape start
load huitong-miss broker "https://$broker" civil-affairs-consumer.pem "$live" "${shape[@]}"
scrape after-miss
load huitong-hit broker "https://$broker" civil-affairs-consumer.pem "$reg" "${shape[@]}"
scrape after-hit
# The cost of recording every person a search reached: 100-record pages against the key
# lookups of huitong-miss, on the same uncached register and grant.
search=gender=female load huitong-search broker "https://$broker" civil-affairs-consumer.pem "$live" "${shape[@]}" \
    --page-size 100

# --- the limit: a static server replaying the adapter's answer ------------------------------
# nghttpd answers every POST to /huitong.v1.Adapter/Fetch with the file below: the adapter's
# own answer to the same request, gRPC-framed, and a grpc-status trailer.
mkdir -p "$scratch/htdocs/huitong.v1.Adapter"
cp "$scratch/answer.bin" "$scratch/htdocs/huitong.v1.Adapter/Fetch"
h2load_run() { # label url
    local label=$1 url=$2
    # h2load counts HTTP statuses only; a few requests through `huitong bench load` first
    # check that the answers decode and carry grpc-status 0.
    check_only=1 load "$label-check" adapter "$url" exchange-office-broker.pem "$reg" "${quick[@]}"
    h2load -c "$conns" -m "$conc" -t 1 -D "$seconds" --warm-up-time "$warmup" \
        -d "$scratch/request.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
        --log-file "$scratch/$label.tsv" "$url/huitong.v1.Adapter/Fetch" >"$scratch/$label.txt" 2>&1 \
        || die "h2load $label failed: $(tail -5 "$scratch/$label.txt")"
    python3 bench/report.py h2load "$label" "$url" "$scratch/$label.txt" "$scratch/$label.tsv" \
        "$seconds" "$warmup" "$conns" "$conc" "$(stat -c %s "$scratch/answer.bin")" >>"$results" \
        || die "h2load $label: answers were not all HTTP 200 (see $scratch/$label.txt)"
    tail -n 1 "$results" >&2
}
for mode in tls h2c; do
    port=$(free_port)
    if [ "$mode" = tls ]; then
        "$nghttpd_bin" -a 127.0.0.1 -d "$scratch/htdocs" --trailer 'grpc-status: 0' "$port" \
            "$pki/public-security-adapter.key" "$pki/public-security-adapter.pem" >/dev/null 2>&1 &
        url=https://127.0.0.1:$port
    else
        "$nghttpd_bin" -a 127.0.0.1 -d "$scratch/htdocs" --trailer 'grpc-status: 0' --no-tls "$port" \
            >/dev/null 2>&1 &
        url=http://127.0.0.1:$port
    fi
    nghttpd_pid=$!
    pids+=("$nghttpd_pid")
    wait_port "$port" nghttpd
    h2load_run "h2load-nghttpd-$mode" "$url"
    # The same static server under our own load generator: the most `huitong bench load` can
    # measure on this machine.
    load "static-$mode" adapter "$url" exchange-office-broker.pem "$reg" "${shape[@]}"
    kill "$nghttpd_pid" 2>/dev/null || true
    wait "$nghttpd_pid" 2>/dev/null || true
done

# --- open loop at one rate for every gRPC setup ----------------------------------------------
rate=${BENCH_RATE:-$(python3 bench/report.py half-min "$results" direct nginx-tls nginx-h2c huitong-miss huitong-hit)}
say "open loop at $rate requests/s (latency from each request's scheduled time)"
open=(--rate "$rate" "${shape[@]}")
load direct adapter "https://$adapter" exchange-office-broker.pem "$reg" "${open[@]}"
load nginx-tls adapter "https://127.0.0.1:$nginx_tls" exchange-office-broker.pem "$reg" "${open[@]}"
load nginx-h2c adapter "http://127.0.0.1:$nginx_h2c" "" "$reg" "${open[@]}"
load huitong-miss broker "https://$broker" civil-affairs-consumer.pem "$live" "${open[@]}"
load huitong-hit broker "https://$broker" civil-affairs-consumer.pem "$reg" "${open[@]}"
rss_loaded=$(rss_mib "$broker_pid")

# --- broker memory with many open connections ------------------------------------------------
say "opening $open_conns connections to the broker (descriptor limit $fd_limit)"
"$huitong" bench connections --addr "https://$broker" --ca "$pki/ca.pem" \
    --cert "$pki/civil-affairs-consumer.pem" --count "$open_conns" --pid "$broker_pid" \
    >"$scratch/connections.txt" 2>&1 || die "no connection could be opened: $(cat "$scratch/connections.txt")"
head -n 1 "$scratch/connections.txt" >&2
python3 - "$scratch/connections.txt" "$rss_idle" "$rss_loaded" "$fd_limit" >>"$results" <<'PY'
import json, sys
summary = json.loads(open(sys.argv.pop(1)).read().strip().splitlines()[-1])
summary.update(rss_idle_mib=float(sys.argv[1]), rss_after_load_mib=float(sys.argv[2]), fd_limit=int(sys.argv[3]))
print(json.dumps(summary))
PY

cleanup
pids=()

# --- the exchange log ------------------------------------------------------------------------
say "exchange log: durable appends, proofs, verification"
{
    "$huitong" bench log --dir "$scratch/log" "${log_args[@]}"
    echo
    # Subject reports at 10^4 and 10^6 entries (BENCH_SUBJECT_SIZES=10000,1000000,10000000 for
    # 10^7: about 3 GB of scratch and several minutes).
    "$huitong" bench subjects --dir "$scratch/subjects" --sizes "${BENCH_SUBJECT_SIZES:-10000,1000000}"
} >"$scratch/log.md"
cat "$scratch/log.md" >&2

# --- publish/subscribe fan-out ---------------------------------------------------------------
say "publish/subscribe: one publisher to 1, 10 and 100 subscribers"
{
    "$huitong" bench events --dir "$scratch/events" --events "${BENCH_EVENTS:-2000}" \
        --subscribers 1,10,100
    "$huitong" bench events --dir "$scratch/events" --events "${BENCH_EVENTS_PACED:-1000}" \
        --subscribers 1,10,100 --rate "${BENCH_EVENTS_RATE:-500}"
} >"$scratch/events.txt" || die "a subscriber missed events; see $scratch/events.txt"
grep -v '^{' "$scratch/events.txt" >&2

# --- report ----------------------------------------------------------------------------------
machine="$(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr), $(df -T "$scratch" | awk 'NR==2 {print $2}') scratch disk; load average (1, 5, 15 min) $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
python3 bench/report.py stages "$scratch"/metrics-{start,after-miss,after-hit}.txt >"$scratch/stages.json"
python3 bench/report.py report "$results" "$scratch/log.md" "$outdir" "$machine" "$profile" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo '+changes')" \
    "$scratch/events.txt"
cp "$results" "$outdir/results.jsonl"
say "written to $outdir/results.md and $outdir/results.svg"
