#!/bin/sh
# 60-reboot: boot 1 leaves a pool with devices active (one holding an ext4
# filesystem, one snapshot, one inactive volume) and powers off without
# deactivating anything. Boot 2, on the same scratch disk, finds the pool
# inactive; the next command re-attaches the loop files, reloads the pool,
# re-activates what was active, and every device has its data. Then destroy.
# shellcheck source=common.sh
. /suite/common.sh

t_before_reboot() {
    must ts pool create --data-size 2G --metadata-size 32M
    must ts volume create r1 --size 512M
    mkfs_mount "$(ts volume path r1)" /mnt/r1
    rand_file /mnt/r1/file 8
    sha256_of /mnt/r1/file >"$T_STATE/r1.sha"
    umount /mnt/r1
    must ts volume snapshot r1 r2
    must ts volume path r2
    must ts volume create r3 --size 64M
    rand_file /tmp/r3.pat 1
    dd if=/tmp/r3.pat of="$(ts volume path r3)" bs=1M oflag=direct 2>/dev/null
    sha256_of /tmp/r3.pat >"$T_STATE/r3.sha"
    must ts volume deactivate r3
    sync
}

t_after_reboot() {
    assert_eq "$(dmsetup ls | grep -c thinsnap)" 0 "nothing is active after a reboot"
    ts pool status | grep -q '^State: *inactive' || fail "status after reboot: $(ts pool status)"
    ls=$(ts volume ls)
    echo "$ls" | grep -q '^r1 .* yes$' || fail "r1 not re-activated: $ls"
    echo "$ls" | grep -q '^r2 .* yes$' || fail "r2 not re-activated: $ls"
    echo "$ls" | grep -q '^r3 .* no$' || fail "r3 should stay inactive: $ls"
    mkdir -p /mnt/r1 /mnt/r2
    mount "$(ts volume path r1)" /mnt/r1
    mount "$(ts volume path r2)" /mnt/r2
    assert_file_sha /mnt/r1/file "$(cat "$T_STATE/r1.sha")"
    assert_file_sha /mnt/r2/file "$(cat "$T_STATE/r1.sha")"
    umount /mnt/r1
    umount /mnt/r2
    got=$(dd if="$(ts volume path r3)" bs=1M count=1 2>/dev/null | sha256sum | cut -d' ' -f1)
    assert_eq "$got" "$(cat "$T_STATE/r3.sha")" "r3 data after reboot"
    out=$(ts pool check) || fail "check after reboot: $out"
}

t_destroy_after_reboot() {
    must ts pool destroy --force
    assert_eq "$(dmsetup ls | grep -c thinsnap)" 0 "no dm devices left"
    [ -z "$(losetup -a | grep "$ROOT")" ] || fail "loop devices left: $(losetup -a)"
    assert_not_exists "$ROOT/pool/data"
}

if on_boot 1; then
    run_test before_reboot t_before_reboot
else
    run_test after_reboot t_after_reboot
    run_test destroy_after_reboot t_destroy_after_reboot
fi
