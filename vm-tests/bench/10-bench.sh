#!/bin/sh
# vm-tests/bench/10-bench.sh - the VM side of tools/bench (not a test suite:
# run it with `tools/bench`, which builds the image archives and passes them
# in with `vm-tests/run --copy-in`).
#
# Three phases, each a run_test so a failure names its phase:
#   thinsnap    a loop pool made by `thinsnap pool create`
#   containerd  `containerd` + `ctr` with the devmapper snapshotter on its own
#               thin pool, made here with dmsetup
#   tar         `mkfs.ext4` + mount + GNU `tar -x` of the layers + sync on a
#               fresh thin device of a third dmsetup pool
# All three pools: loop files on /scratch, 40G data, 1G metadata, 64K blocks,
# no block zeroing; devices of 10 GiB (thinsnap's default base size).
#
# Output lines, parsed by tools/bench:
#   @@BENCH IMPL OP SECONDS    one sample of a timed operation
#   @@BENCHV IMPL KEY VALUE    a measured value (pool bytes, versions)
#   @@BENCHNOTE TEXT           a footnote
# Timing: /proc/uptime (10 ms resolution) read by the shell, no process
# start of its own; every sample starts after a `sync`.
# Environment: BENCH_REPS (default 5): creates, mounts and rms per
# implementation; loads and commits use BENCH_REPS - 2 (at least 2).
# BENCH_PHASES (default "thinsnap containerd tar"): the phases to run.
# shellcheck source=../lib/thinsnap-test.sh
. /lib/thinsnap-test.sh
on_boot 1 || exit 0

IN=/scratch/in/images
B=/scratch/bench
REPS=${BENCH_REPS:-5}
NL=$((REPS - 2))
[ "$NL" -ge 2 ] || NL=2
DEB=bench/debian:1
DATA_SECTORS=83886080 # 40 GiB
DEV_SECTORS=20971520  # 10 GiB

# ------------------------------------------------------------------ helpers
now_cs() {
    read -r _u _r </proc/uptime
    _c=${_u#*.}
    NOW=$((${_u%.*} * 100 + ${_c#0}))
}
tstart() {
    sync
    now_cs
    T0=$NOW
}
# tstop IMPL OP: print the sample since tstart.
tstop() {
    now_cs
    _d=$((NOW - T0))
    _f=$((_d % 100))
    [ "$_f" -lt 10 ] && _f=0$_f
    echo "@@BENCH $1 $2 $((_d / 100)).$_f"
}
val() { echo "@@BENCHV $1 $2 $3"; }
note() { echo "@@BENCHNOTE $*"; }

# pool_used POOL: bytes of the pool's data device in use.
pool_used() {
    sync
    _bs=$(dmsetup table "$1" | awk '{ print $6 }')
    dmsetup status "$1" | awk -v bs="$_bs" '{ split($6, a, "/"); printf "%.0f\n", a[1] * bs * 512 }'
}

# dm_gone NAME: true once no dm device NAME exists (no process start).
dm_gone() {
    [ -e "/dev/mapper/$1" ] && return 1
    for _f in /sys/block/dm-*/dm/name; do
        [ -r "$_f" ] || continue
        read -r _n <"$_f"
        [ "$_n" = "$1" ] && return 1
    done
    return 0
}
# wait_gone NAME: busy-wait (at most 120 s) until dm device NAME is gone.
wait_gone() {
    now_cs
    _end=$((NOW + 12000))
    while ! dm_gone "$1"; do
        now_cs
        [ "$NOW" -lt "$_end" ] || fail "dm device $1 still there 120 s after rm"
    done
}

# mkpool NAME DIR: a thin pool on two fresh sparse loop files in DIR.
mkpool() {
    mkdir -p "$2"
    truncate -s 40G "$2/data"
    truncate -s 1G "$2/metadata"
    # (busybox losetup has no --show)
    _md=$(losetup -f) || fail "no free loop device"
    losetup "$_md" "$2/metadata" || fail "losetup $_md $2/metadata"
    _dd=$(losetup -f) || fail "no free loop device"
    losetup "$_dd" "$2/data" || fail "losetup $_dd $2/data"
    must dmsetup create "$1" --table \
        "0 $DATA_SECTORS thin-pool $_md $_dd 128 32768 1 skip_block_zeroing"
}

# warm FILE...: read files into the page cache (every load reads a cached
# archive).
warm() { cat "$@" >/dev/null; }

TS_ROOT=$B/ts
ts() { thinsnap --root "$TS_ROOT" "$@"; }

# ------------------------------------------------------------------ thinsnap
t_thinsnap() {
    rm -rf "$TS_ROOT"
    must ts pool create --data-size 40G --metadata-size 1G --block-size 64K
    t_defer "thinsnap --root '$TS_ROOT' pool destroy --force >/dev/null 2>&1"
    pool=$(dmsetup ls --target thin-pool | awk '$1 ~ /^thinsnap-/ { print $1; exit }')
    [ -n "$pool" ] || fail "no thinsnap pool in dmsetup ls"

    # The first load makes the base filesystem (once per pool): not measured.
    must ts load -i "$IN/onefile.tar"
    must ts rmi bench/onefile:1
    for img in busybox onefile; do
        u0=$(pool_used "$pool")
        ts load -i "$IN/$img.tar" >/dev/null || fail "load $img"
        u1=$(pool_used "$pool")
        val thinsnap "pool_$img" $((u1 - u0))
    done

    for i in $(seq 1 "$NL"); do
        warm "$IN/debian.tar"
        u0=$(pool_used "$pool")
        tstart
        ts load -i "$IN/debian.tar" >/dev/null || fail "load debian"
        sync
        tstop thinsnap load
        u1=$(pool_used "$pool")
        [ "$i" -eq "$NL" ] || must ts rmi "$DEB"
    done
    val thinsnap pool_debian $((u1 - u0))

    for i in $(seq 1 "$REPS"); do
        tstart
        ts create --name "c$i" "$DEB" >/dev/null || fail "create c$i"
        tstop thinsnap create
    done
    for i in $(seq 1 "$REPS"); do
        tstart
        m=$(ts mount "c$i") || fail "mount c$i"
        tstop thinsnap mount
        echo "$m" >"$B/ts-mnt-c$i"
    done
    for i in $(seq 1 "$NL"); do
        m=$(cat "$B/ts-mnt-c$i")
        cp "$B/10m.bin" "$m/data10m"
        tstart
        ts commit "c$i" "bench/c$i:1" >/dev/null || fail "commit c$i"
        tstop thinsnap commit10
    done
    for i in $(seq 1 "$REPS"); do
        dev=$(ts device "c$i") || fail "device c$i"
        tstart
        ts rm -f "c$i" >/dev/null || fail "rm c$i"
        wait_gone "${dev##*/}"
        tstop thinsnap rm
    done

    # One new file committed, on the Debian image and on busybox, alternately.
    for i in $(seq 1 "$NL"); do
        for img in debian busybox; do
            c=o$img$i
            ts create --name "$c" "bench/$img:1" >/dev/null || fail "create $c"
            m=$(ts mount "$c") || fail "mount $c"
            echo "one new file" >"$m/new-file"
            tstart
            ts commit "$c" "bench/$c:1" >/dev/null || fail "commit $c"
            tstop thinsnap "commit1_$img"
            must ts rm -f "$c"
        done
    done
}

# ---------------------------------------------------------------- containerd
CTD=$B/ctd
CTD_SOCK=/run/bench-containerd/containerd.sock
CTD_POOL=bench-ctd-pool
ctr_() { ctr -a "$CTD_SOCK" -n bench "$@"; }
ctr_dm() { ctr_ snapshots --snapshotter devmapper "$@"; }

t_containerd() {
    rm -rf "$CTD"
    mkpool "$CTD_POOL" "$CTD/pool"
    mkdir -p "$CTD/mnt" /run/bench-containerd
    cat >"$CTD/config.toml" <<EOF
version = 2
root = "$CTD/root"
state = "/run/bench-containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$CTD_SOCK"

[plugins."io.containerd.snapshotter.v1.devmapper"]
  pool_name = "$CTD_POOL"
  root_path = "$CTD/devmapper"
  base_image_size = "10GB"
EOF
    containerd --config "$CTD/config.toml" >"$CTD/containerd.log" 2>&1 &
    echo $! >"$CTD/pid"
    t_defer "kill \$(cat '$CTD/pid') 2>/dev/null; sleep 1"
    i=0
    until ctr_ version >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -lt 60 ] || fail "containerd did not answer in 60 s: $(tail -n 5 "$CTD/containerd.log")"
        sleep 1
    done
    st=$(ctr_ plugins ls | awk '$2 == "devmapper" { print $NF }')
    if [ "$st" != ok ]; then
        t_log "containerd log:"
        grep -i devmapper "$CTD/containerd.log" | tail -n 10 | sed 's/^/# /'
        fail "containerd's devmapper snapshotter is '$st', not ok"
    fi

    ctr_ images import --snapshotter devmapper "$IN/onefile.tar" >/dev/null || fail "import onefile"
    must ctr_ images rm --sync docker.io/bench/onefile:1
    for img in busybox onefile; do
        u0=$(pool_used "$CTD_POOL")
        ctr_ images import --snapshotter devmapper "$IN/$img.tar" >/dev/null || fail "import $img"
        u1=$(pool_used "$CTD_POOL")
        val containerd "pool_$img" $((u1 - u0))
    done

    for i in $(seq 1 "$NL"); do
        warm "$IN/debian.tar"
        u0=$(pool_used "$CTD_POOL")
        tstart
        ctr_ images import --snapshotter devmapper "$IN/debian.tar" >/dev/null || fail "import debian"
        sync
        tstop containerd load
        u1=$(pool_used "$CTD_POOL")
        if [ "$i" -lt "$NL" ]; then
            must ctr_ images rm --sync "docker.io/$DEB"
            t_log "after images rm: $(ctr_ content ls -q | wc -l) blobs, $(ctr_dm ls | tail -n +2 | wc -l) snapshots"
        fi
    done
    val containerd pool_debian $((u1 - u0))

    for i in $(seq 1 "$REPS"); do
        tstart
        ctr_ containers create --snapshotter devmapper "docker.io/$DEB" "c$i" >/dev/null || fail "create c$i"
        tstop containerd create
    done
    for i in $(seq 1 "$REPS"); do
        mkdir -p "$CTD/mnt/c$i"
        tstart
        cmd=$(ctr_dm mounts "$CTD/mnt/c$i" "c$i") || fail "mounts c$i"
        case $cmd in *" -o") cmd=${cmd% -o} ;; *" -o ") cmd=${cmd% -o } ;; esac
        $cmd || fail "mount c$i: $cmd"
        tstop containerd mount
        dev=${cmd#mount -t * }
        echo "${dev%% *}" >"$B/ctd-dev-c$i"
        echo "$cmd" >"$B/ctd-mnt-c$i"
    done
    for i in $(seq 1 "$NL"); do
        cp "$B/10m.bin" "$CTD/mnt/c$i/data10m"
        # The differ mounts the snapshot read-only: it must not be mounted
        # read-write meanwhile.
        must umount "$CTD/mnt/c$i"
        tstart
        ctr_dm diff --media-type application/vnd.oci.image.layer.v1.tar "c$i" >/dev/null \
            || fail "snapshots diff c$i"
        tstop containerd commit10
        cmd=$(cat "$B/ctd-mnt-c$i")
        $cmd || fail "remount c$i"
    done
    for i in $(seq 1 "$REPS"); do
        dev=$(cat "$B/ctd-dev-c$i")
        tstart
        umount "$CTD/mnt/c$i" || fail "umount c$i"
        ctr_ containers rm "c$i" || fail "containers rm c$i"
        wait_gone "${dev##*/}"
        tstop containerd rm
    done
}

# ----------------------------------------------------------------------- tar
RAW=$B/raw
RAW_POOL=bench-raw-pool

t_tar() {
    rm -rf "$RAW"
    mkpool "$RAW_POOL" "$RAW/pool"
    mkdir -p "$RAW/arch" "$RAW/mnt"
    must tar -C "$RAW/arch" -xf "$IN/debian.tar"
    layers=$(sed -n 's/.*"Layers":\[\([^]]*\)\].*/\1/p' "$RAW/arch/manifest.json" | tr -d '"' | tr ',' ' ')
    [ -n "$layers" ] || fail "no layers in manifest.json"
    for i in $(seq 1 "$NL"); do
        d=bench-raw-$i
        must dmsetup message "$RAW_POOL" 0 "create_thin $i"
        must dmsetup create "$d" --table "0 $DEV_SECTORS thin /dev/mapper/$RAW_POOL $i"
        # shellcheck disable=SC2086
        (cd "$RAW/arch" && warm $layers)
        u0=$(pool_used "$RAW_POOL")
        tstart
        mkfs.ext4 -q -E nodiscard "/dev/mapper/$d" || fail "mkfs"
        mount -o noinit_itable "/dev/mapper/$d" "$RAW/mnt" || fail "mount"
        for l in $layers; do
            tar -C "$RAW/mnt" -xf "$RAW/arch/$l" || fail "tar -x $l"
        done
        sync
        tstop tar load
        u1=$(pool_used "$RAW_POOL")
        must umount "$RAW/mnt"
        must dmsetup remove "$d"
        must dmsetup message "$RAW_POOL" 0 "delete $i"
    done
    val tar pool_debian $((u1 - u0))
}

val vm kernel "$(uname -r)"
val containerd version "$(containerd --version | awk '{ print $3 }')"
val image bytes "$(stat -c %s "$IN/debian.tar")"
val image layers "$(tar -xOf "$IN/debian.tar" manifest.json | grep -o '[0-9a-f]*\.tar' | wc -l)"
mkdir -p "$B"
dd if=/dev/urandom of="$B/10m.bin" bs=1M count=10 2>/dev/null
for phase in ${BENCH_PHASES:-thinsnap containerd tar}; do
    case $phase in
        thinsnap | containerd | tar) run_test "$phase" "t_$phase" ;;
        *) t_fail "phase:$phase" "unknown phase (BENCH_PHASES)" ;;
    esac
done
