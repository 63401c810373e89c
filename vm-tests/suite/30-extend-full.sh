#!/bin/sh
# 30-extend-full: extend data and metadata while a device is mounted; fill a
# small pool: writes fail fast (no hang), new devices are refused with a
# message naming `pool extend`, and after an extend the pool works again.
# shellcheck source=common.sh
. /suite/common.sh
on_boot 1 || exit 0

t_extend_while_mounted() {
    must ts pool create --data-size 256M --metadata-size 8M
    must ts volume create fs --size 1G
    mkfs_mount "$(ts volume path fs)" /mnt/fs
    rand_file /mnt/fs/a 8
    sa=$(sha256_of /mnt/fs/a)
    must ts pool extend --data-size +256M --metadata-size 16M
    assert_eq "$(status_num data_space total)" 536870912 "data total after extend"
    assert_eq "$(status_num metadata_space total)" 16777216 "metadata total after extend"
    assert_eq "$(stat -c %s "$ROOT/pool/data")" 536870912 "data file grown"
    rand_file /mnt/fs/b 8
    sync
    assert_file_sha /mnt/fs/a "$sa"
    expect_rc 2 ts pool extend --data-size 100M
    assert_contains "$(cat "$ERR_OUT")" "cannot shrink"
    umount /mnt/fs
}

t_full_pool_fails_fast() {
    must ts volume create filler --size 2G
    d=$(ts volume path filler)
    rc=0
    timeout 300 dd if=/dev/zero of="$d" bs=1M count=1024 oflag=direct 2>/dev/null || rc=$?
    [ "$rc" != 0 ] || fail "writing 1 GiB into a 512 MiB pool succeeded"
    [ "$rc" != 124 ] && [ "$rc" != 143 ] || fail "the write hung until the timeout instead of failing"
    ts pool status | grep -q '^Health: *out_of_data_space' || fail "status should report out_of_data_space: $(ts pool status)"
    expect_rc 5 ts volume create more --size 1G
    assert_contains "$(cat "$ERR_OUT")" "thinsnap pool extend"
}

t_extend_makes_it_usable() {
    must ts pool extend --data-size +1G
    ts pool status | grep -q '^Health: *ok' || fail "pool still unhealthy after extend: $(ts pool status)"
    d=$(ts volume path filler)
    dd if=/dev/urandom of="$d" bs=1M count=64 seek=1100 oflag=direct 2>/dev/null || fail "writes still fail after extend"
    must ts volume create more --size 1G
    mount "$(ts volume path fs)" /mnt/fs
    [ -s /mnt/fs/a ] || fail "fs lost its data"
    umount /mnt/fs
    out=$(ts pool check) || fail "check after fill: $out"
}

t_cleanup() { must ts pool destroy --force; }

run_test extend_while_mounted t_extend_while_mounted
run_test full_pool_fails_fast t_full_pool_fails_fast
run_test extend_makes_it_usable t_extend_makes_it_usable
run_test cleanup t_cleanup
