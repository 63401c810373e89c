#!/bin/sh
# 10-pool-volumes: create a loop pool; volumes, snapshots (of inactive and of
# mounted origins) each keeping their own bytes; devices listing; rm frees
# pool space and shrinks the data file; activate/deactivate idempotent;
# config file defaults; zeroing option; check; destroy.
# shellcheck source=common.sh
. /suite/common.sh
on_boot 1 || exit 0

t_create() {
    must ts pool create --data-size 4G --metadata-size 64M
    assert_exists "$ROOT/pool/data"
    [ "$(alloc_kb "$ROOT/pool/data")" -lt 65536 ] || fail "data file is not sparse: $(alloc_kb "$ROOT/pool/data") KiB"
    assert_eq "$(stat -c %s "$ROOT/pool/data")" 4294967296 "data file size"
    assert_eq "$(stat -c %s "$ROOT/pool/metadata")" 67108864 "metadata file size"
    st=$(ts pool status)
    echo "$st" | grep -q '^State: *active$' || fail "pool not active: $st"
    echo "$st" | grep -q '^Pool Blocksize: *64K$' || fail "block size: $st"
    echo "$st" | grep -q '^Error If No Space: *yes$' || fail "error_if_no_space: $st"
    echo "$st" | grep -q '^Block Zeroing: *off$' || fail "zeroing: $st"
    echo "$st" | grep -q '^Health: *ok$' || fail "health: $st"
    tbl=$(dmsetup table | grep thin-pool)
    assert_contains "$tbl" " 128 " "64K blocks in the table"
    assert_contains "$tbl" "skip_block_zeroing"
    assert_contains "$tbl" "error_if_no_space"
    assert_eq "$(status_num data_space total)" 4294967296 "data total"
    expect_rc 4 ts pool create --data-size 4G
    assert_contains "$(cat "$ERR_OUT")" "already exists"
}

t_snapshots_keep_their_own_bytes() {
    must ts volume create v1 --size 1G
    d1=$(ts volume path v1)
    [ -b "$d1" ] || fail "$d1 is not a block device"
    assert_eq "$(blockdev --getsize64 "$d1")" 1073741824 "volume size"
    mkfs_mount "$d1" /mnt/v1
    rand_file /mnt/v1/shared 4
    echo base >/mnt/v1/common
    sha_shared=$(sha256_of /mnt/v1/shared)
    umount /mnt/v1
    must ts volume snapshot v1 v2
    d2=$(ts volume path v2)
    mkdir -p /mnt/v2
    mount "$d1" /mnt/v1
    mount "$d2" /mnt/v2
    echo one >/mnt/v1/common
    echo two >/mnt/v2/common
    rand_file /mnt/v1/only1 2
    rand_file /mnt/v2/only2 2
    s1=$(sha256_of /mnt/v1/only1)
    s2=$(sha256_of /mnt/v2/only2)
    umount /mnt/v1
    umount /mnt/v2
    mount "$d1" /mnt/v1
    mount "$d2" /mnt/v2
    assert_eq "$(cat /mnt/v1/common)" one "v1 keeps its change"
    assert_eq "$(cat /mnt/v2/common)" two "v2 keeps its change"
    assert_file_sha /mnt/v1/shared "$sha_shared"
    assert_file_sha /mnt/v2/shared "$sha_shared"
    assert_file_sha /mnt/v1/only1 "$s1"
    assert_file_sha /mnt/v2/only2 "$s2"
    assert_not_exists /mnt/v1/only2
    assert_not_exists /mnt/v2/only1
    umount /mnt/v2
}

t_snapshot_of_a_mounted_origin() {
    # v1 stays mounted from the previous test: the origin is live.
    rand_file /mnt/v1/before 3
    sync
    sb=$(sha256_of /mnt/v1/before)
    must ts volume snapshot v1 v3
    assert_eq "$(dm_state "$(dm_name_of v1)")" ACTIVE "origin resumed after the snapshot"
    timeout 60 sh -c 'echo after >/mnt/v1/after && sync' || fail "writes to the origin hang after the snapshot"
    d3=$(ts volume path v3)
    mkdir -p /mnt/v3
    mount "$d3" /mnt/v3
    assert_file_sha /mnt/v3/before "$sb"
    assert_not_exists /mnt/v3/after
    umount /mnt/v3
}

t_listing() {
    out=$(ts pool devices)
    for v in v1 v2 v3; do assert_contains "$out" "$v"; done
    assert_not_contains "$out" ".identity" "the identity device is internal"
    ls=$(ts volume ls)
    echo "$ls" | grep -q '^v3 .* v1 *yes$' || fail "v3 should list origin v1 and active: $ls"
    m=$(mapped_of v1)
    [ "$m" -gt 9000000 ] || fail "v1 maps $m bytes, expected > 9 MB"
    assert_eq "$(status_num - thin_devices)" 3 "status counts 3 devices"
}

t_rm_frees_pool_space_and_file_space() {
    u0=$(status_num data_space used)
    k0=$(alloc_kb "$ROOT/pool/data")
    must ts volume create big --size 1G
    db=$(ts volume path big)
    dd if=/dev/urandom of="$db" bs=1M count=200 oflag=direct 2>/dev/null
    u1=$(status_num data_space used)
    [ $((u1 - u0)) -ge 200000000 ] || fail "pool use grew by $((u1 - u0)), expected >= 200 MB"
    k1=$(alloc_kb "$ROOT/pool/data")
    must ts volume rm big
    u2=$(status_num data_space used)
    [ $((u2 - u0)) -lt 2000000 ] || fail "pool use after rm is $u2, was $u0 before create"
    k2=$(alloc_kb "$ROOT/pool/data")
    [ $((k1 - k2)) -ge 180000 ] || fail "data file did not shrink: ${k1}K -> ${k2}K"
    expect_rc 3 ts volume path big
}

# Removing a snapshot discards only the blocks it does not share with its
# origin: `debug unshared` (the in-process reader of the held metadata
# snapshot) names exactly the range written to it, the origin's bytes
# survive the snapshot's removal, and the data file shrinks by what the
# snapshot owned.
t_rm_discards_only_unshared_blocks() {
    must ts volume create ushbase --size 256M
    ob=$(ts volume path ushbase)
    dd if=/dev/urandom of="$ob" bs=1M count=64 oflag=direct 2>/dev/null
    h0=$(head -c 67108864 "$ob" | sha256sum | cut -d' ' -f1)
    assert_eq "$(ts debug unshared ushbase)" "0 67108864" "an origin owns all it maps"
    must ts volume snapshot ushbase ushsnap
    assert_eq "$(ts debug unshared ushsnap)" "" "a fresh snapshot owns nothing"
    sb=$(ts volume path ushsnap)
    dd if=/dev/urandom of="$sb" bs=1M seek=32 count=8 conv=notrunc oflag=direct 2>/dev/null
    dd if=/dev/urandom of="$sb" bs=1M seek=100 count=16 conv=notrunc oflag=direct 2>/dev/null
    assert_eq "$(ts debug unshared ushsnap | tr '\n' ' ')" "33554432 8388608 104857600 16777216 " \
        "the snapshot owns what was written to it"
    k1=$(alloc_kb "$ROOT/pool/data")
    must ts volume rm ushsnap
    k2=$(alloc_kb "$ROOT/pool/data")
    [ $((k1 - k2)) -ge 23552 ] || fail "data file shrank by $((k1 - k2))K, expected 24M"
    [ $((k1 - k2)) -le 25600 ] || fail "data file shrank by $((k1 - k2))K: the origin's blocks went too"
    assert_eq "$(head -c 67108864 "$ob" | sha256sum | cut -d' ' -f1)" "$h0" "origin intact"
    must ts volume rm ushbase
}

t_errors_are_clear() {
    expect_rc 3 ts volume rm nosuch
    assert_contains "$(cat "$ERR_OUT")" "no thin device named"
    expect_rc 2 ts volume create bad/name --size 1G
    expect_rc 2 ts volume create x --size 12Q
    expect_rc 3 ts volume snapshot nosuch y
    expect_rc 4 ts volume create v1 --size 1G
    expect_rc 3 thinsnap --root "$T_STATE/none" pool status
    assert_contains "$(cat "$ERR_OUT")" "thinsnap pool create"
}

t_activate_deactivate_idempotent() {
    expect_rc 4 ts pool deactivate
    umount /mnt/v1
    must ts pool activate
    must ts pool activate
    must ts pool deactivate
    must ts pool deactivate
    assert_eq "$(dmsetup ls | grep -c thinsnap)" 0 "no dm devices left"
    [ -z "$(losetup -a | grep "$ROOT")" ] || fail "loop devices left: $(losetup -a)"
    ts pool status | grep -q '^State: *inactive' || fail "status should say inactive"
    # Any device command activates lazily; the active devices come back.
    d1=$(ts volume path v1)
    mount "$d1" /mnt/v1
    assert_eq "$(cat /mnt/v1/common)" one
    umount /mnt/v1
    assert_eq "$(dm_state "$(basename "$(ts volume path v2)")")" ACTIVE "v2 re-activated"
    must ts volume deactivate v2
    ts volume ls | grep -q '^v2 .* no$' || fail "v2 should be inactive"
}

t_check_clean_live_and_offline() {
    out=$(ts pool check) || fail "check failed: $out"
    assert_contains "$out" "thin_dump --metadata-snap: ok"
    assert_contains "$out" "pool is clean"
    must ts pool deactivate
    out=$(ts pool check) || fail "offline check failed: $out"
    assert_contains "$out" "thin_check: ok"
    assert_contains "$out" "thin ids in pool metadata: 4, in store: 4"
}

t_config_file_and_zeroing() {
    R=$T_STATE/cfg
    mkdir -p "$R"
    printf '[pool]\ndata_size = "512M"\nmetadata_size = "16M"\nblock_size = "128K"\nmin_free_space = 5\n' >"$R/config.toml"
    must thinsnap --root "$R" pool create --zero-blocks
    st=$(thinsnap --root "$R" pool status)
    echo "$st" | grep -q '^Pool Blocksize: *128K$' || fail "config block size ignored: $st"
    echo "$st" | grep -q '^Data Space Total: *512M$' || fail "config data size ignored: $st"
    echo "$st" | grep -q '^Minimum Free Space: *5%$' || fail "config min free ignored: $st"
    echo "$st" | grep -q '^Block Zeroing: *on$' || fail "zeroing flag ignored: $st"
    assert_not_contains "$(dmsetup table | grep thin-pool)" "skip_block_zeroing" "the main pool is down; only this one is listed"
    printf '[pool]\ndata_sise = "1G"\n' >"$R/config.toml"
    expect_rc 2 thinsnap --root "$R" pool status
    assert_contains "$(cat "$ERR_OUT")" "config"
    rm "$R/config.toml"
    must thinsnap --root "$R" pool destroy
}

t_destroy() {
    expect_rc 4 ts pool destroy
    assert_contains "$(cat "$ERR_OUT")" "--force"
    assert_exists "$ROOT/pool/data"
    must ts pool destroy --force
    assert_not_exists "$ROOT/pool/data"
    assert_not_exists "$ROOT/pool/metadata"
    assert_eq "$(dmsetup ls | grep -c thinsnap)" 0 "no dm devices left"
    expect_rc 3 ts pool status
}

run_test create t_create
run_test snapshots_keep_their_own_bytes t_snapshots_keep_their_own_bytes
run_test snapshot_of_a_mounted_origin t_snapshot_of_a_mounted_origin
run_test listing t_listing
run_test rm_frees_pool_space_and_file_space t_rm_frees_pool_space_and_file_space
run_test rm_discards_only_unshared_blocks t_rm_discards_only_unshared_blocks
run_test errors_are_clear t_errors_are_clear
run_test activate_deactivate_idempotent t_activate_deactivate_idempotent
run_test check_clean_live_and_offline t_check_clean_live_and_offline
run_test config_file_and_zeroing t_config_file_and_zeroing
run_test destroy t_destroy
