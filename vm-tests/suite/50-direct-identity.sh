#!/bin/sh
# 50-direct-identity: direct mode on block devices (loop devices standing in
# for disks): a metadata device that is not blank is refused without
# --force and left untouched; destroy blanks it again. A pool whose data and
# metadata were swapped with another pool's is refused as a different pool,
# and works again once they are put back.
# shellcheck source=common.sh
. /suite/common.sh
on_boot 1 || exit 0

t_direct_mode() {
    truncate -s 1G "$T_STATE/disk-data"
    truncate -s 64M "$T_STATE/disk-meta"
    D=$(losetup -f)
    losetup "$D" "$T_STATE/disk-data"
    M=$(losetup -f)
    losetup "$M" "$T_STATE/disk-meta"
    echo "$D $M" >"$T_STATE/devs"
    t_defer "losetup -d $D; losetup -d $M"
    printf 'old filesystem' | dd of="$M" bs=512 seek=1 conv=notrunc 2>/dev/null
    sync
    expect_rc 4 ts pool create --data-dev "$D" --metadata-dev "$M"
    assert_contains "$(cat "$ERR_OUT")" "not blank"
    assert_eq "$(dd if="$M" bs=512 skip=1 count=1 2>/dev/null | head -c 14)" "old filesystem" "refused create left the device alone"
    must ts pool create --data-dev "$D" --metadata-dev "$M" --force
    st=$(ts pool status)
    echo "$st" | grep -q '^Mode: *direct$' || fail "mode: $st"
    assert_eq "$(status_num data_space total)" 1073741824 "direct pool takes the device size"
    must ts volume create dv --size 256M
    dv=$(ts volume path dv)
    rand_file /tmp/dv.pat 2
    dd if=/tmp/dv.pat of="$dv" bs=1M oflag=direct 2>/dev/null
    # The metadata device is read past its page cache: a second read sees
    # what was written after the first.
    assert_eq "$(ts debug unshared dv)" "0 2097152" "blocks of a direct pool's volume"
    dd if=/tmp/dv.pat of="$dv" bs=1M seek=8 oflag=direct 2>/dev/null
    assert_eq "$(ts debug unshared dv | tr '\n' ' ')" "0 2097152 8388608 2097152 " "read again after more writes"
    must ts pool deactivate
    must ts pool activate
    got=$(dd if="$(ts volume path dv)" bs=1M count=2 2>/dev/null | sha256sum | cut -d' ' -f1)
    assert_eq "$got" "$(sha256_of /tmp/dv.pat)" "data survives deactivate/activate"
    must ts pool destroy --force
    assert_eq "$(dd if="$M" bs=4096 count=1 2>/dev/null | tr -d '\0' | wc -c)" 0 "destroy blanks the metadata head"
    must ts pool create --data-dev "$D" --metadata-dev "$M"
    must ts pool destroy
}

t_swapped_pool_is_refused() {
    A=$T_STATE/a
    B=$T_STATE/b
    must thinsnap --root "$A" pool create --data-size 256M --metadata-size 8M
    must thinsnap --root "$B" pool create --data-size 256M --metadata-size 8M
    must thinsnap --root "$A" volume create va --size 64M
    must thinsnap --root "$B" volume create vb --size 64M
    must thinsnap --root "$A" pool deactivate
    must thinsnap --root "$B" pool deactivate
    for f in data metadata; do
        mv "$A/pool/$f" "$T_STATE/$f.a"
        mv "$B/pool/$f" "$A/pool/$f"
        mv "$T_STATE/$f.a" "$B/pool/$f"
    done
    expect_rc 6 thinsnap --root "$A" volume ls
    assert_contains "$(cat "$ERR_OUT")" "different thin pool"
    assert_eq "$(dmsetup ls | grep -c thinsnap)" 0 "a refused pool is not left active"
    for f in data metadata; do
        mv "$A/pool/$f" "$T_STATE/$f.b"
        mv "$B/pool/$f" "$A/pool/$f"
        mv "$T_STATE/$f.b" "$B/pool/$f"
    done
    assert_contains "$(thinsnap --root "$A" volume ls)" "va"
    assert_contains "$(thinsnap --root "$B" volume ls)" "vb"
    must thinsnap --root "$A" pool destroy --force
    must thinsnap --root "$B" pool destroy --force
}

run_test direct_mode t_direct_mode
run_test swapped_pool_is_refused t_swapped_pool_is_refused
