#!/bin/sh
# 80-containers: containers on the devmapper driver (ext4): create (a thin
# snapshot of the image's top layer), mount and write, diff, device and
# inspect (DeviceId, DeviceName, DeviceSize), --size refused, commit, rm,
# rmi, and the pool back to its base device only.
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
    expect_rc 7 dm create --size 2G base:1
    assert_contains "$(cat "$ERR_OUT")" "not supported yet"
    c2=$(dm create --size 1G base:1) || fail "create --size 1G: $c2"
    must dm rm "$c2"

    new=$(dm commit -m "on thin" web app:1) || fail "commit: $new"
    assert_contains "$(dm history app:1)" "on thin"
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

run_test containers_on_thin_devices t_containers_on_thin_devices
