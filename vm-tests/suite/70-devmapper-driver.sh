#!/bin/sh
# 70-devmapper-driver: the snapshotter conformance suite on real dm-thin
# (ext4, and a subset on xfs); then images on the devmapper driver: an
# image made and saved with the vfs driver loads onto thin snapshots, saves
# back byte-identical, and `rmi` returns the pool to its starting usage.
# shellcheck source=common.sh
. /suite/common.sh
on_boot 1 || exit 0

# conform LOG ARGS...: runs the suite, then shows each case's line.
conform() {
    _log=$1
    shift
    _rc=0
    thinsnap debug conformance "$@" >"$_log" 2>&1 || _rc=$?
    grep -E '^conformance' "$_log" | sed 's/^/# /'
    return "$_rc"
}

t_conformance_ext4() {
    # Other scripts' pools may be active (60-reboot keeps one for boot 2):
    # count only what the conformance run adds.
    before=$(dmsetup ls | grep -c thinsnap || true)
    conform "$T_STATE/ext4.log" --root "$T_STATE/conf-ext4" || fail "conformance failed: $(grep -E 'FAILED|panicked' "$T_STATE/ext4.log" | head -n 5)"
    out=$(cat "$T_STATE/ext4.log")
    assert_contains "$out" "14 case(s) passed on devmapper (ext4)"
    assert_eq "$(grep -c '^conformance (devmapper) .*: ok$' "$T_STATE/ext4.log")" 14 "every case ran and passed"
    assert_not_contains "$out" "FAILED"
    assert_eq "$(dmsetup ls | grep -c thinsnap || true)" "$before" "conformance pools torn down ($(dmsetup ls | tr '\n' ' '); $(grep cleanup "$T_STATE/ext4.log"))"
}

t_conformance_xfs() {
    conform "$T_STATE/xfs.log" --root "$T_STATE/conf-xfs" --fs xfs --case basics --case lower_layer_changes --case ownership_and_modes || fail "xfs conformance failed: $(grep -E 'FAILED|panicked' "$T_STATE/xfs.log" | head -n 5)"
    out=$(cat "$T_STATE/xfs.log")
    assert_contains "$out" "3 case(s) passed on devmapper (xfs)"
}

V=$T_STATE/vfs
D=$T_STATE/dm

t_images_on_thin_snapshots() {
    mkdir -p "$T_STATE/rootfs/bin" "$T_STATE/rootfs/etc"
    cp /bin/busybox "$T_STATE/rootfs/bin/busybox"
    ln -sf busybox "$T_STATE/rootfs/bin/sh"
    echo "hello from a thin layer" >"$T_STATE/rootfs/etc/motd"
    tar -C "$T_STATE/rootfs" -cf "$T_STATE/rootfs.tar" .
    must thinsnap --driver vfs --root "$V" import -c 'CMD ["/bin/sh"]' "$T_STATE/rootfs.tar" demo:1
    must thinsnap --driver vfs --root "$V" save -o "$T_STATE/demo.tar" demo:1
    must thinsnap --root "$D" pool create --data-size 4G --metadata-size 64M
    printf '[devmapper]\nbase_size = "1G"\n' >"$D/config.toml"
    base=$(thinsnap --root "$D" pool status --json | awk '/"used":/ { gsub(/,/, "", $2); print $2; exit }')
    out=$(thinsnap --driver devmapper --root "$D" load -i "$T_STATE/demo.tar") || fail "load on devmapper: $out"
    assert_contains "$out" "Loaded image: demo:1"
    imgs=$(thinsnap --driver devmapper --root "$D" images)
    assert_contains "$imgs" "demo"
    devs=$(thinsnap --root "$D" pool devices)
    assert_contains "$devs" "snapshot-base"
    echo "$devs" | grep -q ' snapshot ' || fail "no layer device in the pool: $devs"
    gd=$(thinsnap --driver devmapper --root "$D" inspect demo:1)
    assert_contains "$gd" '"Name": "devmapper"'
    must thinsnap --driver devmapper --root "$D" save -o "$T_STATE/demo-dm.tar" demo:1
    assert_eq "$(sha256_of "$T_STATE/demo-dm.tar")" "$(sha256_of "$T_STATE/demo.tar")" "save from devmapper equals save from vfs"
    # The layer's files are on the thin device: view it and read them.
    must thinsnap --driver devmapper --root "$D" snapshot view look "$(thinsnap --driver devmapper --root "$D" snapshot ls | awk '/layer-/ { print $1; exit }')"
    mnt=$(thinsnap --driver devmapper --root "$D" snapshot mounts look)
    assert_contains "$mnt" '"type": "ext4"'
    assert_contains "$mnt" '"ro"'
    src=$(echo "$mnt" | awk -F'"' '/"source"/ { print $4 }')
    mkdir -p /mnt/look
    mount -t ext4 -o ro,noload "$src" /mnt/look
    assert_eq "$(cat /mnt/look/etc/motd)" "hello from a thin layer"
    umount /mnt/look
    must thinsnap --driver devmapper --root "$D" snapshot rm look
    echo "$base" >"$T_STATE/base.used"
}

t_rmi_returns_the_pool_to_its_start() {
    out=$(thinsnap --driver devmapper --root "$D" rmi demo:1) || fail "rmi: $out"
    assert_contains "$out" "Deleted: sha256:"
    devs=$(thinsnap --root "$D" pool devices)
    echo "$devs" | grep -q ' snapshot ' && fail "layer devices left: $devs"
    # Only the base device (made once, shared by every future image) remains.
    assert_contains "$devs" "snapshot-base"
    out=$(thinsnap --root "$D" pool check) || fail "pool check: $out"
    assert_contains "$out" "pool is clean"
    expect_rc 4 thinsnap --driver vfs --root "$D" images
    assert_contains "$(cat "$ERR_OUT")" "devmapper driver"
    must thinsnap --root "$D" pool destroy --force
    # A new pool under the same root starts clean: the images lived in the old one.
    must thinsnap --root "$D" pool create --data-size 4G --metadata-size 64M
    out=$(thinsnap --driver devmapper --root "$D" images) || fail "images on a new pool: $out"
    assert_not_contains "$out" "demo"
    out=$(thinsnap --driver devmapper --root "$D" load -i "$T_STATE/demo.tar") || fail "load on a new pool: $out"
    assert_contains "$out" "Loaded image: demo:1"
    must thinsnap --root "$D" pool destroy --force
}

run_test conformance_ext4 t_conformance_ext4
run_test conformance_xfs t_conformance_xfs
run_test images_on_thin_snapshots t_images_on_thin_snapshots
run_test rmi_returns_the_pool_to_its_start t_rmi_returns_the_pool_to_its_start
