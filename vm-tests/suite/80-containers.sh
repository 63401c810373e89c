#!/bin/sh
# 80-containers: containers on the devmapper driver (ext4): create (a thin
# snapshot of the image's top layer), mount and write, diff, device and
# inspect (DeviceId, DeviceName, DeviceSize), --size (smaller refused, larger grows device and ext4), commit, rm,
# rmi, and the pool back to its base device only; then kill -9 during
# create, rm and commit, each recovered by the next command with a clean
# pool; and diff/commit reading only the inodes the pool says changed,
# checked against the full walk.
# shellcheck source=common.sh
. /suite/common.sh
on_boot 1 || exit 0

D=$T_STATE/dm
dm() { thinsnap --driver devmapper --root "$D" "$@"; }

t_containers_on_thin_devices() {
    mkdir -p "$T_STATE/rootfs/bin" "$T_STATE/rootfs/etc" "$T_STATE/rootfs/old"
    cp /bin/busybox "$T_STATE/rootfs/bin/busybox"
    echo "base motd" >"$T_STATE/rootfs/etc/motd"
    echo "gone soon" >"$T_STATE/rootfs/old/file"
    tar -C "$T_STATE/rootfs" -cf "$T_STATE/rootfs.tar" .
    must thinsnap --root "$D" pool create --data-size 4G --metadata-size 64M
    printf '[devmapper]\nbase_size = "1G"\n' >"$D/config.toml"
    must dm import "$T_STATE/rootfs.tar" base:1

    id=$(dm create --name web base:1) || fail "create: $id"
    assert_eq "${#id}" 64 "a 64-hex container id"
    assert_contains "$(dm ps)" "web"
    dev=$(dm device web) || fail "device: $dev"
    assert_exists "$dev"
    ins=$(dm inspect web) || fail "inspect: $ins"
    assert_contains "$ins" '"DeviceSize": "1073741824"'
    assert_contains "$ins" '"DeviceName": "snap-'
    assert_contains "$ins" '"DeviceId"'

    mnt=$(dm mount web) || fail "mount: $mnt"
    assert_eq "$(cat "$mnt/etc/motd")" "base motd"
    echo "changed" >"$mnt/etc/motd"
    echo "new" >"$mnt/new"
    rm -r "$mnt/old"
    must dm unmount web
    out=$(dm diff web) || fail "diff: $out"
    assert_eq "$out" "C /etc
C /etc/motd
A /new
D /old" "diff lines"

    expect_rc 2 dm create --size 512M base:1
    assert_contains "$(cat "$ERR_OUT")" "smaller than the base device"
    c2=$(dm create --size 1G base:1) || fail "create --size 1G: $c2"
    must dm rm "$c2"
    # Bigger than the base: the thin device and its ext4 grow.
    big=$(dm create --size 3G base:1) || fail "create --size 3G: $big"
    assert_eq "$(blockdev --getsize64 "$(dm device "$big")")" 3221225472 "grown device size"
    m=$(dm mount "$big")
    kb=$(df -Pk "$m" | awk 'NR == 2 { print $2 }')
    [ "$kb" -gt 2900000 ] || fail "filesystem not grown: ${kb} KiB"
    assert_eq "$(cat "$m/etc/motd")" "base motd" "image content kept"
    must dm rm -f "$big"
    # ps SIZE: the bytes the container's device does not share with its
    # image (read from the pool's metadata): 8 MiB written, plus the few
    # blocks ext4's metadata and journal touched.
    sz=$(dm create --name sizer base:1) || fail "create sizer: $sz"
    m=$(dm mount sizer)
    dd if=/dev/urandom of="$m/eight" bs=1M count=8 2>/dev/null
    sync
    size=$(dm ps --format json | awk -F'"Size":"' '/"sizer"/ { split($2, a, "\""); print a[1] }')
    echo "$size" | awk '/MB$/ { v = $0 + 0; exit !(v >= 8.38 && v < 10) } { exit 1 }' ||
        fail "ps SIZE of a container with 8 MiB written is $size"
    must dm rm -f sizer

    new=$(dm commit -m "on thin" web app:1) || fail "commit: $new"
    assert_contains "$(dm history app:1)" "on thin"
    # The new layer is a thin snapshot of the container: no data copied.
    cdev=$(dm inspect web | awk -F'"' '/"DeviceName"/ { print $4 }')
    n=$(thinsnap --root "$D" pool devices | awk -v c="$cdev" '$3 == "snapshot" && $NF == c' | wc -l)
    [ "$n" -ge 1 ] || fail "no layer device snapshotted from the container's $cdev: $(thinsnap --root "$D" pool devices)"
    c3=$(dm create --name again app:1) || fail "create of the committed image: $c3"
    dm export -o "$T_STATE/again.tar" again || fail "export"
    mkdir -p "$T_STATE/again"
    tar -C "$T_STATE/again" -xf "$T_STATE/again.tar"
    assert_eq "$(cat "$T_STATE/again/etc/motd")" "changed"
    assert_eq "$(cat "$T_STATE/again/new")" "new"
    assert_not_exists "$T_STATE/again/old"

    mnt=$(dm mount again) || fail "mount again: $mnt"
    expect_rc 4 dm rm again
    expect_rc 4 dm rmi app:1
    assert_contains "$(cat "$ERR_OUT")" "container again"
    must dm rm -f again web
    must dm rmi app:1
    must dm rmi base:1
    devs=$(thinsnap --root "$D" pool devices)
    echo "$devs" | grep -q 'snap-' && fail "devices left: $devs"
    out=$(thinsnap --root "$D" pool check) || fail "pool check: $out"
    assert_contains "$out" "pool is clean"
    must thinsnap --root "$D" pool destroy --force
}

# crash POINT CMD...: CMD must die by SIGKILL at POINT.
crash() {
    _p=$1
    shift
    _rc=0
    THINSNAP_CRASH_AT=$_p "$@" >/dev/null 2>&1 || _rc=$?
    [ "$_rc" = 137 ] || fail "expected death by SIGKILL at $_p, got exit $_rc"
}

# clean_pool WHAT N: the next command recovers; N snap- devices remain and
# `pool check` reports a clean pool.
clean_pool() {
    must dm ps
    assert_eq "$(thinsnap --root "$D" pool devices | grep -c 'snap-')" "$2" "thin devices after $1"
    out=$(thinsnap --root "$D" pool check) || fail "pool check after $1: $out"
    assert_contains "$out" "pool is clean"
}

t_kill_9_during_create_rm_commit() {
    # A root of its own: `pool destroy` leaves the engine's and the
    # snapshotter's records behind.
    D=$T_STATE/dm2
    must thinsnap --root "$D" pool create --data-size 4G --metadata-size 64M
    printf '[devmapper]\nbase_size = "1G"\n' >"$D/config.toml"
    must dm import "$T_STATE/rootfs.tar" base:1
    crash container-create-prepared dm create --name k1 base:1
    clean_pool create 1
    assert_not_contains "$(dm ps)" "k1"
    must dm create --name k2 base:1
    crash container-rm-marked dm rm k2
    clean_pool rm 1
    assert_not_contains "$(dm ps)" "k2"
    must dm create --name k3 base:1
    mnt=$(dm mount k3) || fail "mount: $mnt"
    echo "data" >"$mnt/data"
    crash container-commit-unsaved dm commit k3 app:1
    clean_pool commit 2
    assert_not_contains "$(dm images)" "app"
    new=$(dm commit k3 app:1) || fail "commit after the crash: $new"
    must dm rm -f k3
    must dm rmi app:1 base:1
    clean_pool "rm and rmi" 0
    must thinsnap --root "$D" pool destroy --force
}

# same_diff C: `diff` (reading only the scope) equals the full walk.
same_diff() {
    _full=$(dm debug diff --walk full "$1") || fail "full diff of $1: $_full"
    _scoped=$(dm diff "$1") || fail "diff of $1: $_scoped"
    [ -n "$_full" ] || fail "$1 has changes"
    assert_eq "$_scoped" "$_full" "scoped diff of $1"
}

# scope_lines C: how many paths the scope of C's diff has ("-": none).
scope_lines() {
    _s=$(dm debug diff --scope "$1") || fail "scope of $1: $_s"
    [ "$_s" != "-" ] || fail "no scope for $1 on ext4"
    echo "$_s" | wc -l
}

t_diff_reads_only_changed_inodes() {
    D=$T_STATE/dm3
    R=$T_STATE/many
    # 2400 files in 60 directories: inodes in many 64 KiB blocks.
    for d in $(seq 1 60); do
        mkdir -p "$R/d$d/sub"
        for f in $(seq 1 40); do echo "file $d $f" >"$R/d$d/f$f"; done
    done
    ln "$R/d1/f1" "$R/d2/hard"
    ln -s ../d1 "$R/d3/sym"
    tar -C "$R" -cf "$T_STATE/many.tar" .
    total=$(find "$R" | wc -l)
    must thinsnap --root "$D" pool create --data-size 4G --metadata-size 64M
    printf '[devmapper]\nbase_size = "1G"\n' >"$D/config.toml"
    must dm import "$T_STATE/many.tar" many:1

    # One new file: a scope of a few inode blocks, not the whole tree.
    must dm create --name one many:1
    m=$(dm mount one) || fail "mount: $m"
    echo "one new file" >"$m/d30/new"
    n=$(scope_lines one)
    [ "$n" -lt $((total / 2)) ] || fail "scope of $n paths for one new file in $total"
    # Reading the container whole (export, a full diff walk) leaves its
    # access times alone: under relatime each first read would dirty an
    # inode and widen the scope to the whole tree.
    must dm export -o "$T_STATE/one.tar" one
    [ "$(tar -tf "$T_STATE/one.tar" | wc -l)" -ge "$total" ] || fail "export of one is short"
    dm debug diff --walk full one >/dev/null || fail "full diff walk of one"
    # (The one symlink's inode may join: readlink always touches atime.)
    n=$(scope_lines one)
    [ "$n" -lt $((total / 2)) ] || fail "scope of $n paths in $total after export"
    assert_eq "$(dm diff one)" "C /d30
A /d30/new"

    # Every kind of change: the scoped diff is the full walk's.
    must dm create --name all many:1
    m=$(dm mount all) || fail "mount: $m"
    echo "changed" >"$m/d5/f5"
    echo "more" >>"$m/d6/f6"
    chmod 600 "$m/d7/f7"
    chown 1000:1000 "$m/d8/f8"
    touch -d "2001-01-01 00:00:00" "$m/d9/f9"
    mkdir -p "$m/d10/new/deep"
    echo x >"$m/d10/new/deep/x"
    rm "$m/d11/f11"
    rm -r "$m/d12"
    mv "$m/d13/f13" "$m/d14/moved"
    mv "$m/d15" "$m/d16/moved-dir"
    ln "$m/d17/f17" "$m/d17/hard2"
    rm "$m/d3/sym"
    ln -s ../d2 "$m/d3/sym"
    rm -r "$m/d18"
    echo "a file now" >"$m/d18"
    rm "$m/d19/f19"
    mkdir "$m/d19/f19"
    rm -r "$m/d20/sub"
    mkdir "$m/d20/sub"
    echo y >"$m/d20/sub/y"
    same_diff all

    # A container of a committed image: its layer, made by commit, is a
    # snapshot of the container and gets its own index.
    must dm commit all many:2
    must dm create --name next many:2
    m=$(dm mount next) || fail "mount: $m"
    echo "after commit" >"$m/d40/f1"
    rm "$m/d14/moved"
    same_diff next
    n=$(scope_lines next)
    [ "$n" -lt "$total" ] || fail "scope of $n paths in $total"
    must dm rm -f one all next
    must dm rmi many:2 many:1
    must thinsnap --root "$D" pool destroy --force
}

run_test containers_on_thin_devices t_containers_on_thin_devices
run_test kill_9_during_create_rm_commit t_kill_9_during_create_rm_commit
run_test diff_reads_only_changed_inodes t_diff_reads_only_changed_inodes
