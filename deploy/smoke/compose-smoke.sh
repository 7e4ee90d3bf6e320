#!/usr/bin/env bash
# compose-smoke: the clustered stack of docker-compose.yml, end to end.
#
#  1. installs Docker (docker.io) and docker-compose with apt when absent,
#     and starts dockerd when none answers;
#  2. builds the scratch images (make images) and the framecast CLI;
#  3. brings the stack up under its own project name and ports, and checks
#     that Caddy's one origin serves the viewer, the browser client and the
#     producer API (a ComfyUI-shaped float32 batch, received with tail);
#  4. publishes through the GPU host (gpu-leaf, a NATS leaf node, and
#     gpu-producer, which reaches the hub only through it) a batch of small
#     frames and one larger than the producer's inline limit (1 MiB),
#     which travels through the OUTPUTS_LARGE object store (R3 like the
#     stream) by way of the leaf; cuts the host's WAN for 20 s (the hub's
#     servers taken off the network wan) while calling it: every publish
#     is answered 503 with Retry-After; after the restore the cut frame,
#     retried with the same Idempotency-Key, and a second batch are stored,
#     and a tail through Caddy gets all of them exactly once, in order,
#     byte for byte; then starts `framecast tail --since 0` through Caddy,
#     publishes a batch like it through the hub's producer and sees it
#     arrive;
#  5. kills the gateway that tail is on and the NATS node that leads the
#     OUTPUTS stream, publishes a second batch (retrying with the same
#     Idempotency-Key while the cluster fails over);
#  6. checks that the running tail (reconnected through Caddy, resumed by
#     sequence) and a fresh `tail --since 0` both got every published
#     frame exactly once, in order, with contiguous sequences, and byte
#     for byte the image that was published;
#  7. brings the stack down, on failure too, and stops the dockerd it
#     started.
#
# Exits 0 on success and prints "compose-smoke: 1 passed, 0 failed".
# Ports (loopback): SMOKE_PORT_BASE (default 18080) for Caddy, +1 for the
# producer, +2 for the GPU host's producer, +142..+144 for NATS monitoring.
set -euo pipefail

cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH

PROJECT=framecast-smoke
BASE=${SMOKE_PORT_BASE:-18080}
export FRAMECAST_LB_PORT=$BASE
export FRAMECAST_PRODUCER_PORT=$((BASE + 1))
export FRAMECAST_NATS_1_MONITOR_PORT=$((BASE + 142))
export FRAMECAST_NATS_2_MONITOR_PORT=$((BASE + 143))
export FRAMECAST_NATS_3_MONITOR_PORT=$((BASE + 144))
export FRAMECAST_GPU_PRODUCER_PORT=$((BASE + 2))
LB=http://127.0.0.1:$FRAMECAST_LB_PORT
PRODUCER=http://127.0.0.1:$FRAMECAST_PRODUCER_PORT
GPU_PRODUCER=http://127.0.0.1:$FRAMECAST_GPU_PRODUCER_PORT
# Frames per batch: BATCH-1 small ones, then one large one.
BATCH=7
# LARGE_SIDE x LARGE_SIDE RGB noise: a PNG of about 1.5 MB, above the
# producer's default inline limit of 1 MiB.
LARGE_SIDE=720

WORK=$(mktemp -d /tmp/framecast-smoke.XXXXXX)
STARTED_DOCKERD=""
TAIL_PID=""
GPU_TAIL_PID=""
COMPOSE=()
PASSED=""

log() { printf '%s compose-smoke: %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() {
  log "FAIL: $*"
  exit 1
}

cleanup() {
  local rc=$?
  set +e
  [ -n "$TAIL_PID" ] && kill "$TAIL_PID" 2>/dev/null
  [ -n "$GPU_TAIL_PID" ] && kill "$GPU_TAIL_PID" 2>/dev/null
  if [ ${#COMPOSE[@]} -gt 0 ]; then
    if [ -z "$PASSED" ]; then
      log "stack state and logs at the failure:"
      "${COMPOSE[@]}" ps
      "${COMPOSE[@]}" logs --no-color --tail 40
      for f in "$WORK"/*.out "$WORK"/*.err; do
        [ -s "$f" ] && { echo "== $f"; tail -n 40 "$f"; }
      done
    fi
    "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1
  fi
  if [ -n "$STARTED_DOCKERD" ]; then
    kill "$STARTED_DOCKERD" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 1; done
  fi
  rm -rf "$WORK"
  if [ -n "$PASSED" ]; then
    echo "compose-smoke: 1 passed, 0 failed"
  else
    echo "compose-smoke: 0 passed, 1 failed"
    [ "$rc" -eq 0 ] && rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. Docker -------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
  need+=(docker-compose)
fi
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Compose v2 (the docker CLI plugin) when installed, else Debian's
# docker-compose 1.29; the stack works with both.
if docker compose version >/dev/null 2>&1; then
  COMPOSE_CMD=(docker compose)
else
  COMPOSE_CMD=(docker-compose)
fi
log "using ${COMPOSE_CMD[*]} $("${COMPOSE_CMD[@]}" version --short 2>/dev/null)"
COMPOSE=("${COMPOSE_CMD[@]}" -p "$PROJECT")

start_dockerd() {
  log "starting dockerd $* (log: /var/log/framecast-dockerd.log)"
  dockerd "$@" >>/var/log/framecast-dockerd.log 2>&1 &
  STARTED_DOCKERD=$!
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$STARTED_DOCKERD" 2>/dev/null || break
    sleep 1
  done
  kill "$STARTED_DOCKERD" 2>/dev/null
  wait "$STARTED_DOCKERD" 2>/dev/null
  STARTED_DOCKERD=""
  return 1
}
if ! docker info >/dev/null 2>&1; then
  # overlay2 with iptables first; sandboxes without them get vfs and no
  # iptables (the stack only publishes loopback ports).
  start_dockerd || start_dockerd --storage-driver=vfs ||
    start_dockerd --storage-driver=vfs --iptables=false ||
    fail "dockerd does not start; see /var/log/framecast-dockerd.log"
fi

# --- 2. Images and the CLI ---------------------------------------------------
log "building images"
make --no-print-directory images >"$WORK/images.log" 2>&1 || {
  tail -n 30 "$WORK/images.log"
  fail "make images"
}
go build -o "$WORK/framecast" ./services/framecast/cmd/framecast
FC="$WORK/framecast"

# --- 3. The stack ---------------------------------------------------------
"${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
log "starting the stack (project $PROJECT, Caddy on $LB, producer on $PRODUCER)"
"${COMPOSE[@]}" up -d >"$WORK/up.log" 2>&1 || {
  cat "$WORK/up.log"
  fail "compose up"
}

# jsz NODE prints the monitoring JSON of nats-NODE's JetStream for the
# FRAMECAST account.
jsz() {
  local port=$((BASE + 141 + $1))
  curl -fsS --max-time 3 "http://127.0.0.1:$port/jsz?acc=FRAMECAST&streams=true&config=true" 2>/dev/null
}
# gateway_conns prints how many NATS connections the gateways hold.
gateway_conns() {
  local n=0 port c
  for port in $((BASE + 142)) $((BASE + 143)) $((BASE + 144)); do
    c=$(curl -fsS --max-time 3 "http://127.0.0.1:$port/connz?auth=true" 2>/dev/null |
      python3 -c 'import json,sys; print(sum(1 for c in json.load(sys.stdin).get("connections") or [] if c.get("authorized_user")=="gateway"))' 2>/dev/null) || c=0
    n=$((n + ${c:-0}))
  done
  echo "$n"
}

log "waiting for the cluster, the stream (R3), both gateways and the producer"
ready=""
deadline=$((SECONDS + 120))
while [ "$SECONDS" -lt "$deadline" ]; do
  if curl -fsS --max-time 3 -o /dev/null "$PRODUCER/readyz" 2>/dev/null &&
    curl -fsS --max-time 3 -o /dev/null "$LB/readyz" 2>/dev/null &&
    [ "$(gateway_conns)" -ge 2 ] &&
    jsz 1 | python3 -c '
import json, sys
d = json.load(sys.stdin)
ss = [s for a in d.get("account_details") or [] for s in a.get("stream_detail") or [] if s["name"] == "OUTPUTS"]
ok = ss and ss[0]["config"]["num_replicas"] == 3 and ss[0].get("cluster", {}).get("leader")
sys.exit(0 if ok else 1)' 2>/dev/null; then
    ready=1
    break
  fi
  sleep 1
done
[ -n "$ready" ] || fail "stack not ready after 120s"
# Caddy's active health checks run every second: let both gateways enter
# the pool.
sleep 3

# --- One origin: viewer, browser client and producer API through Caddy -----
# Whole bodies first: grep -q stops reading at its match, and under
# pipefail curl's "failed writing body" would fail the check.
page=$(curl -fsS --max-time 5 "$LB/") && grep -qi '<html' <<<"$page" || fail "no viewer at $LB/"
js=$(curl -fsS --max-time 5 "$LB/framecast.js") && grep -q 'export' <<<"$js" || fail "no browser client at $LB/framecast.js"
COMFY_OID="smoke-comfy-$(date +%s)"
# A ComfyUI-shaped IMAGE batch: float32 B,H,W,C = 2,8,8,3, values 0..1.
python3 -c 'import struct, sys; n = 2*8*8*3; sys.stdout.buffer.write(struct.pack("<%df" % n, *[(i % 97) / 96 for i in range(n)]))' >"$WORK/comfy.f32"
answer=$(curl -fsS --max-time 20 -X POST -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/comfy.f32" \
  "$LB/v1/outputs/$COMFY_OID/images?width=8&height=8&channels=3&dtype=float32&batch=2&file_type=webp") ||
  fail "float32 batch through Caddy to the producer refused"
[ "$(echo "$answer" | grep -o '"seq"' | wc -l)" -eq 2 ] || fail "float32 batch: got $answer; want 2 frames"
timeout 60 "$FC" tail --gateway-url "$LB" --output-id "$COMFY_OID" --since 0 --count 2 >"$WORK/tail-comfy.out" 2>&1 ||
  { cat "$WORK/tail-comfy.out"; fail "tail of the float32 batch through Caddy"; }
[ "$(grep -c '^seq=.* size=8x8 ' "$WORK/tail-comfy.out")" -eq 2 ] || { cat "$WORK/tail-comfy.out"; fail "tail: want 2 frames of 8x8"; }
log "viewer, browser client, and a float32 batch published and received through Caddy ($COMFY_OID)"

# check_tails NAME WANT TAIL...: each tail (TAIL.out, images in TAIL.img)
# got exactly the WANT frames recorded in NAME.seqs, in order, with
# contiguous sequences and no gap, each image byte for byte the file
# recorded in NAME.lines.
check_tails() {
  python3 - "$WORK" "$@" <<'EOF'
import os, re, sys
work, pubname, want, tails = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
pub = [int(l) for l in open("%s/%s.seqs" % (work, pubname)) if l.strip()]
ok = True
def check(name, got):
    global ok
    if got != pub:
        print("%s: got seqs %s; want %s" % (name, got, pub))
        ok = False
if len(pub) != want or len(set(pub)) != want or pub != list(range(pub[0], pub[0] + want)):
    print("published seqs %s; want %d contiguous" % (pub, want))
    ok = False
for name in tails:
    text = open("%s/%s.out" % (work, name)).read()
    if "gap:" in text:
        print("%s reported a gap" % name)
        ok = False
    check(name, [int(s) for s in re.findall(r"^seq=(\d+)", text, re.M)])
    # Every image saved as <seq>.png is the published file, byte for byte.
    for line in open("%s/%s.lines" % (work, pubname)):
        m = re.match(r"seq=(\d+) .* file=(.+)$", line.strip())
        if not m:
            print("publish line %r has no seq and file" % line)
            ok = False
            continue
        got = os.path.join(work, name + ".img", m.group(1) + ".png")
        want = open(m.group(2), "rb").read()
        if not os.path.exists(got):
            print("%s: no image saved for seq %s" % (name, m.group(1)))
            ok = False
        elif open(got, "rb").read() != want:
            print("%s: seq %s: got %d bytes; want those of %s (%d bytes)" % (name, m.group(1), os.path.getsize(got), m.group(2), len(want)))
            ok = False
sys.exit(0 if ok else 1)
EOF
}

# publish_to PRODUCER_URL OID NAME BATCH_DIR KEY: one batch, retried with
# the same Idempotency-Key until the producer accepts it (503 while NATS
# fails over or a GPU host's WAN is cut); the frames are recorded in
# NAME.seqs and NAME.lines.
publish_to() {
  local url=$1 oid=$2 name=$3 dir=$4 key=$5 try
  for try in $(seq 1 90); do
    if "$FC" publish --producer-url "$url" --output-id "$oid" --type png \
      --idempotency-key "$key" --timeout 20s "$dir" >"$WORK/publish-$key.out" 2>"$WORK/publish-$key.err"; then
      grep -o '^seq=[0-9]*' "$WORK/publish-$key.out" | cut -d= -f2 >>"$WORK/$name.seqs"
      grep '^seq=' "$WORK/publish-$key.out" >>"$WORK/$name.lines"
      log "published batch $key (try $try): seqs $(grep -o '^seq=[0-9]*' "$WORK/publish-$key.out" | cut -d= -f2 | tr '\n' ' ')"
      return 0
    fi
    sleep 1
  done
  cat "$WORK/publish-$key.err"
  fail "publish $key: not accepted in 90 tries"
}
publish() { publish_to "$PRODUCER" "$OID" published "$@"; }
frames() { grep -c '^seq=' "$1" 2>/dev/null || true; }

# --- The batches' images ------------------------------------------------------
OID="smoke-$(date +%s)"
python3 - "$WORK" "$BATCH" "$LARGE_SIDE" <<'EOF'
# Writes one folder per batch, a/ and b/: distinct 16x16 RGB PNGs 00.png..,
# then a LARGE_SIDE x LARGE_SIDE PNG of noise (incompressible, so it stays
# larger than the inline limit).
import os, struct, sys, zlib
work, n, side = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def png(path, w, h, row):
    raw = b"".join(b"\x00" + row(y) for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)
for k, d in enumerate("ab"):
    os.makedirs(os.path.join(work, d), exist_ok=True)
    for i in range(n - 1):
        rgb = bytes((40 * i % 256, 128 * k, 255 - 30 * i % 256))
        png(os.path.join(work, d, "%02d.png" % i), 16, 16, lambda y: rgb * 16)
    png(os.path.join(work, d, "%02d.png" % (n - 1)), side, side, lambda y: os.urandom(3 * side))
EOF
large=$(stat -c %s "$WORK/a/$(printf %02d $((BATCH - 1))).png")
[ "$large" -gt $((1 << 20)) ] || fail "the large frame is $large bytes; want more than the 1 MiB inline limit"

# --- A GPU host: through its leaf, across a WAN cut --------------------------
# gpu-producer reaches the hub only through gpu-leaf, whose one network
# (wan) it shares with the hub's servers. Taking those off wan cuts the
# host's WAN without a word, as a real one fails: the leaf finds out by
# its pings (leaf.conf).
GPU_OID="smoke-gpu-$(date +%s)"
log "GPU host: waiting for its producer (publishing through the leaf gpu-1)"
ready=""
for _ in $(seq 1 60); do
  curl -fsS --max-time 3 -o /dev/null "$GPU_PRODUCER/readyz" 2>/dev/null && { ready=1; break; }
  sleep 1
done
[ -n "$ready" ] || fail "GPU host's producer not ready after 60s"
"$FC" tail --gateway-url "$LB" --output-id "$GPU_OID" --since 0 --count $((2 * BATCH + 1)) --out "$WORK/tail-gpu.img" \
  >"$WORK/tail-gpu.out" 2>"$WORK/tail-gpu.err" &
GPU_TAIL_PID=$!
publish_to "$GPU_PRODUCER" "$GPU_OID" gpu "$WORK/a" "$GPU_OID-a"

WAN=$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" --filter label=com.docker.compose.network=wan)
[ -n "$WAN" ] || fail "no network wan in project $PROJECT"
# post_gpu KEY: one small PNG to the GPU host's producer; prints the HTTP
# status, the Retry-After header and the answer in $WORK/gpu-KEY.*.
post_gpu() {
  curl -sS --max-time 30 -o "$WORK/gpu-$1.body" -D "$WORK/gpu-$1.headers" -w '%{http_code}' -X POST \
    -H 'Content-Type: image/png' -H "Idempotency-Key: $1" --data-binary @"$WORK/a/00.png" \
    "$GPU_PRODUCER/v1/outputs/$GPU_OID/images" 2>>"$WORK/gpu-curl.err" || true
}
log "cutting the GPU host's WAN (nats-1..3 off network wan) for 20s"
cut_at=$SECONDS
for n in 1 2 3; do
  docker network disconnect "$WAN" "$("${COMPOSE[@]}" ps -q "nats-$n")" || fail "disconnect nats-$n from wan"
done
# Publishes during the cut: each answered 503 with Retry-After, none 200.
CUT_KEY="$GPU_OID-cut"
probes=0
while [ $((SECONDS - cut_at)) -lt 20 ]; do
  code=$(post_gpu "$CUT_KEY")
  [ "$code" = 503 ] || fail "publish through the cut WAN: got HTTP $code ($(cat "$WORK/gpu-$CUT_KEY.body" 2>/dev/null)); want 503"
  grep -qi '^Retry-After: [0-9]' "$WORK/gpu-$CUT_KEY.headers" || fail "503 through the cut WAN without Retry-After"
  probes=$((probes + 1))
  sleep 1
done
log "$probes publishes during the cut: each 503 with Retry-After ($(grep -o '"code":"[a-z_]*"' "$WORK/gpu-$CUT_KEY.body"))"
for n in 1 2 3; do
  docker network connect --alias "nats-$n" "$WAN" "$("${COMPOSE[@]}" ps -q "nats-$n")" || fail "connect nats-$n to wan"
done
log "WAN restored; retrying the cut frame with the same Idempotency-Key"
ok=""
for try in $(seq 1 90); do
  code=$(post_gpu "$CUT_KEY")
  if [ "$code" = 200 ]; then ok=$try; break; fi
  sleep 1
done
[ -n "$ok" ] || fail "the cut frame was not accepted in 90 tries after the restore (last HTTP $code)"
seq=$(grep -o '"seq":[0-9]*' "$WORK/gpu-$CUT_KEY.body" | cut -d: -f2)
echo "$seq" >>"$WORK/gpu.seqs"
echo "seq=$seq via=curl file=$WORK/a/00.png" >>"$WORK/gpu.lines"
log "the cut frame stored at seq $seq (try $ok after the restore)"
publish_to "$GPU_PRODUCER" "$GPU_OID" gpu "$WORK/b" "$GPU_OID-b"
for _ in $(seq 1 120); do
  kill -0 "$GPU_TAIL_PID" 2>/dev/null || break
  sleep 0.5
done
kill -0 "$GPU_TAIL_PID" 2>/dev/null && fail "GPU host's tail has $(frames "$WORK/tail-gpu.out") of $((2 * BATCH + 1)) frames after 60s"
wait "$GPU_TAIL_PID" || fail "GPU host's tail exited with $?"
GPU_TAIL_PID=""
check_tails gpu $((2 * BATCH + 1)) tail-gpu || fail "GPU host's frames lost, duplicated, out of order or changed"
log "GPU host: tail got seqs $(tr '\n' ' ' <"$WORK/gpu.seqs")through the leaf, byte for byte, the cut frame once"

# --- 4. First batch, live ---------------------------------------------------
# Nothing else is published from here on: the frames of $OID have
# contiguous sequences.
log "tail --since 0 through Caddy (output $OID)"
"$FC" tail --gateway-url "$LB" --output-id "$OID" --since 0 --count $((2 * BATCH)) --out "$WORK/tail-live.img" \
  >"$WORK/tail-live.out" 2>"$WORK/tail-live.err" &
TAIL_PID=$!
gw=""
for _ in $(seq 1 30); do
  gw=$(sed -n 's/^hello: gateway \([^,]*\),.*/\1/p' "$WORK/tail-live.out" | head -n 1)
  [ -n "$gw" ] && break
  sleep 1
done
[ -n "$gw" ] || fail "tail got no hello from the gateways"
log "tail is on $gw"

publish "$WORK/a" "$OID-a"
for _ in $(seq 1 60); do
  [ "$(frames "$WORK/tail-live.out")" -ge "$BATCH" ] && break
  kill -0 "$TAIL_PID" 2>/dev/null || break
  sleep 0.5
done
[ "$(frames "$WORK/tail-live.out")" -ge "$BATCH" ] || fail "tail got $(frames "$WORK/tail-live.out") of $BATCH live frames"
log "tail got the first $BATCH frames live"
# The large frame went through the bucket: its stream holds the image's
# chunks and metadata, replicated like OUTPUTS.
jsz 1 | python3 -c '
import json, sys
d = json.load(sys.stdin)
ss = [s for a in d.get("account_details") or [] for s in a.get("stream_detail") or [] if s["name"] == "OBJ_OUTPUTS_LARGE"]
if not ss:
    sys.exit("no stream OBJ_OUTPUTS_LARGE")
c, st = ss[0]["config"], ss[0]["state"]
if c["num_replicas"] != 3 or st["messages"] < 2:
    sys.exit("%d replicas, %d messages; want 3 replicas and the large frame (chunks and metadata)" % (c["num_replicas"], st["messages"]))
print("%d messages, %d bytes" % (st["messages"], st["bytes"]))' >"$WORK/bucket.out" 2>&1 ||
  fail "large-frame bucket: $(cat "$WORK/bucket.out")"
log "large-frame bucket OBJ_OUTPUTS_LARGE (R3): $(cat "$WORK/bucket.out")"

# --- 5. Faults --------------------------------------------------------------
leader=$(jsz 1 | python3 -c '
import json, sys
d = json.load(sys.stdin)
ss = [s for a in d.get("account_details") or [] for s in a.get("stream_detail") or [] if s["name"] == "OUTPUTS"]
print(ss[0]["cluster"]["leader"])')
log "killing $gw (tail's gateway) and $leader (the OUTPUTS stream leader)"
"${COMPOSE[@]}" kill "$gw" "$leader" >/dev/null 2>&1 || fail "kill $gw $leader"

publish "$WORK/b" "$OID-b"

# --- 6. Nothing lost ----------------------------------------------------------
log "waiting for the running tail to reconnect and finish"
for _ in $(seq 1 120); do
  kill -0 "$TAIL_PID" 2>/dev/null || break
  sleep 0.5
done
if kill -0 "$TAIL_PID" 2>/dev/null; then
  fail "running tail has $(frames "$WORK/tail-live.out") of $((2 * BATCH)) frames after 60s"
fi
wait "$TAIL_PID" || fail "running tail exited with $?"
TAIL_PID=""
grep -q '^disconnected from' "$WORK/tail-live.err" || fail "running tail never saw its gateway go"

log "fresh tail --since 0 with one gateway and one NATS node down"
timeout 60 "$FC" tail --gateway-url "$LB" --output-id "$OID" --since 0 --count $((2 * BATCH)) --out "$WORK/tail-replay.img" \
  >"$WORK/tail-replay.out" 2>"$WORK/tail-replay.err" || fail "fresh tail: exit $?"

check_tails published $((2 * BATCH)) tail-live tail-replay || fail "frames lost, duplicated, out of order or changed"
sed 's/^/  running tail: /' "$WORK/tail-live.err"
log "running tail's gateways: $(sed -n 's/^hello: gateway \([^,]*\),.*/\1/p' "$WORK/tail-live.out" | tr '\n' ' ')"
log "running tail and fresh replay both got seqs $(tr '\n' ' ' <"$WORK/published.seqs")byte for byte (the large ones about $large bytes each)"
PASSED=1
