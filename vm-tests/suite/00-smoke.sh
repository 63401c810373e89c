#!/bin/sh
# shellcheck shell=sh
# 00-smoke.sh - harness smoke test, independent of thinsnap: proves that
# dm-thin, loop devices, ext4/xfs and the two-boot mechanism work in the VM.
#
# Boot 1: a loop-backed thin pool on /scratch; write/read a pattern through a
#         thin device; thin snapshot CoW; ext4 and xfs on thin devices; leave
#         the (deactivated) pool files and a marker file on /scratch.
# Boot 2: the marker file survived; the pool re-activates from its metadata
#         and both the origin and the snapshot still hold their data.
# shellcheck source-path=SCRIPTDIR source=../lib/thinsnap-test.sh
. /lib/thinsnap-test.sh

D=$T_STATE            # /scratch/state/00-smoke, kept between boots
META=$D/pool.meta
DATA=$D/pool.data
POOL=smoke-pool
BLOCK=128             # pool block size in sectors (64 KiB)
DATA_SECTORS=4194304  # 2 GiB pool
THIN_SECTORS=2097152  # 1 GiB thin devices (mkfs.xfs needs >= 300 MiB)
PAT=/tmp/smoke.pat    # 8 MiB pattern (RAM)
PAT2=/tmp/smoke.pat2

# /dev/loopN backing FILE, if any
loop_of() {
    for _b in /sys/block/loop*/loop/backing_file; do
        [ -e "$_b" ] || continue
        if [ "$(cat "$_b")" = "$1" ]; then
            _l=${_b#/sys/block/}
            echo "/dev/${_l%%/*}"
            return 0
        fi
    done
    return 1
}

attach() {
    _dev=$(losetup -f) || fail "no free loop device"
    losetup "$_dev" "$1" || fail "losetup $_dev $1 failed"
    echo "$_dev"
}

dm_exists() { dmsetup info "$1" >/dev/null 2>&1; }

# Remove everything this script activates; safe to call at any time.
teardown() {
    for _n in smoke-xfs smoke-ext4 smoke-snap smoke-thin "$POOL"; do
        if dm_exists "$_n"; then dmsetup remove "$_n" || return 1; fi
    done
    for _f in "$META" "$DATA"; do
        if _l=$(loop_of "$_f"); then losetup -d "$_l" || return 1; fi
    done
    return 0
}

# activate_pool: loop-attach the pool files and load the thin-pool table.
activate_pool() {
    _m=$(attach "$META")
    _d=$(attach "$DATA")
    dmsetup create "$POOL" --table "0 $DATA_SECTORS thin-pool $_m $_d $BLOCK 0" \
        || fail "dmsetup create $POOL failed"
    assert_exists "/dev/mapper/$POOL" "pool node"
}

# activate_thin NAME ID
activate_thin() {
    dmsetup create "$1" --table "0 $THIN_SECTORS thin /dev/mapper/$POOL $2" \
        || fail "dmsetup create $1 (thin id $2) failed"
    assert_exists "/dev/mapper/$1" "thin node $1"
}

# field N of `dmsetup status NAME`
status_field() { dmsetup status "$1" | awk -v n="$2" '{ print $n }'; }

# pool data blocks in use
pool_used_data() { status_field "$POOL" 6 | cut -d/ -f1; }

# sha256 of N MiB of DEV starting at MiB OFFSET, bypassing the page cache
dev_sha() {
    dd if="$1" bs=1M skip="$2" count="$3" iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1
}

# Boot-1 tests build on each other (pool -> thin -> snapshot -> ...): they
# keep the pool active; t_deactivate tears it down, and so does the end of
# this script whatever happened.

# ------------------------------------------------------------------ boot 1
t_environment() {
    assert_eq "$VM_BOOT" 1 "VM_BOOT"
    assert_eq "$VM_BOOTS" 2 "VM_BOOTS"
    assert_contains "$(grep ' /scratch ' /proc/mounts)" " ext4 " "/scratch is ext4"
    assert_eq "$TMPDIR" /scratch/tmp "TMPDIR"
    assert_not_exists "$D/marker" "fresh scratch disk has no marker"
    _t=$(dmsetup targets)
    assert_contains "$_t" "thin-pool" "dm targets"
    echo "$_t" | grep -q '^thin ' || fail "no 'thin' target in: $_t"
    grep -qw xfs /proc/filesystems || fail "xfs not registered"
    for _p in thin_check thin_dump thin_ls thin_repair thin_restore thin_delta \
        thin_metadata_size mkfs.ext4 e2fsck resize2fs tune2fs mkfs.xfs xfs_growfs \
        xfs_repair dmsetup losetup sha256sum; do
        command -v "$_p" >/dev/null || fail "$_p not in the VM"
    done
    must thin_metadata_size -b 64k -s 2g -m 10 -u m
}

t_thin_roundtrip() {
    mkdir -p "$D"
    truncate -s 32M "$META"
    truncate -s $((DATA_SECTORS * 512)) "$DATA"
    activate_pool
    must dmsetup message "$POOL" 0 "create_thin 0"
    activate_thin smoke-thin 0
    assert_eq "$(status_field smoke-thin 4)" 0 "mapped sectors of a new thin device"

    yes thinsnap-smoke-pattern | head -c 8388608 >"$PAT"
    _sha=$(sha256_of "$PAT")
    # 8 MiB at offset 1 MiB: exactly 128 pool blocks of 64 KiB
    must dd if="$PAT" of=/dev/mapper/smoke-thin bs=1M seek=1 conv=fsync 2>/dev/null
    assert_eq "$(dev_sha /dev/mapper/smoke-thin 1 8)" "$_sha" "read-back sha256"
    assert_eq "$(dev_sha /dev/mapper/smoke-thin 100 1)" \
        "$(head -c 1048576 /dev/zero | sha256sum | cut -d' ' -f1)" "unwritten region reads as zeros"
    assert_eq "$(status_field smoke-thin 4)" 16384 "thin mapped sectors (8 MiB)"
    assert_eq "$(pool_used_data)" 128 "pool data blocks used"
    dmsetup status "$POOL"
    echo "$_sha" >"$D/origin.sha1"
}

t_thin_snapshot() {
    must dmsetup suspend smoke-thin
    must dmsetup message "$POOL" 0 "create_snap 1 0"
    must dmsetup resume smoke-thin
    activate_thin smoke-snap 1
    _orig=$(cat "$D/origin.sha1")
    assert_eq "$(dev_sha /dev/mapper/smoke-snap 1 8)" "$_orig" "snapshot sees origin data"
    # overwrite the origin: CoW must keep the snapshot intact
    yes other-pattern | head -c 8388608 >"$PAT2"
    _new=$(sha256_of "$PAT2")
    must dd if="$PAT2" of=/dev/mapper/smoke-thin bs=1M seek=1 conv=fsync 2>/dev/null
    assert_eq "$(dev_sha /dev/mapper/smoke-thin 1 8)" "$_new" "origin has new data"
    assert_eq "$(dev_sha /dev/mapper/smoke-snap 1 8)" "$_orig" "snapshot kept old data"
    assert_eq "$(pool_used_data)" 256 "pool blocks after CoW of 128 shared blocks"
    echo "$_new" >"$D/origin.sha2"
}

# mkfs, mount, write, remount, verify, fsck on thin device ID (ext4|xfs)
fs_on_thin() {
    _fs=$1 _id=$2 _name=smoke-$1
    t_defer "if dm_exists $_name; then dmsetup remove $_name; fi"
    t_defer "umount /mnt/$_fs 2>/dev/null || true"
    must dmsetup message "$POOL" 0 "create_thin $_id"
    activate_thin "$_name" "$_id"
    _dev=/dev/mapper/$_name
    case $_fs in
        ext4) must mkfs.ext4 -q -F "$_dev" ;;
        xfs) must mkfs.xfs -q -f "$_dev" ;;
    esac
    mkdir -p "/mnt/$_fs"
    must mount -t "$_fs" "$_dev" "/mnt/$_fs"
    must cp "$PAT" "/mnt/$_fs/file"
    _sha=$(sha256_of "$PAT")
    must umount "/mnt/$_fs"
    must mount -t "$_fs" -o ro "$_dev" "/mnt/$_fs"
    assert_file_sha "/mnt/$_fs/file" "$_sha" "file on $_fs after remount"
    must umount "/mnt/$_fs"
    case $_fs in
        ext4) must e2fsck -fn "$_dev" ;;
        xfs) must xfs_repair -n "$_dev" ;;
    esac
    must dmsetup remove "$_name"
    must dmsetup message "$POOL" 0 "delete $_id"
}

t_deactivate() {
    must dmsetup remove smoke-snap
    must dmsetup remove smoke-thin
    must dmsetup remove "$POOL"
    _m=$(loop_of "$META") || fail "metadata loop device vanished"
    must thin_check "$_m"
    _ls=$(thin_ls --no-headers -o DEV "$_m" 2>&1) || fail "thin_ls failed: $_ls"
    assert_eq "$(echo "$_ls" | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')" "0 1" "thin ids in metadata"
    must teardown
    assert_eq "$(dmsetup ls | grep -c smoke)" 0 "no smoke devices left"
    if loop_of "$META" >/dev/null || loop_of "$DATA" >/dev/null; then
        fail "loop devices still attached"
    fi
}

t_write_marker() {
    head -c 4096 /dev/urandom >"$D/marker"
    sha256_of "$D/marker" >"$D/marker.sha"
    assert_file_sha "$D/marker" "$(cat "$D/marker.sha")"
}

# ------------------------------------------------------------------ boot 2
t_marker_survived() {
    assert_eq "$VM_BOOT" 2 "VM_BOOT"
    assert_exists "$D/marker.sha" "marker checksum from boot 1"
    assert_file_sha "$D/marker" "$(cat "$D/marker.sha")" "marker from boot 1"
}

t_pool_survived() {
    t_defer teardown
    _m=$(attach "$META")
    must thin_check "$_m"
    must losetup -d "$_m"
    activate_pool
    activate_thin smoke-thin 0
    activate_thin smoke-snap 1
    assert_eq "$(dev_sha /dev/mapper/smoke-thin 1 8)" "$(cat "$D/origin.sha2")" "origin after reboot"
    assert_eq "$(dev_sha /dev/mapper/smoke-snap 1 8)" "$(cat "$D/origin.sha1")" "snapshot after reboot"
    assert_eq "$(pool_used_data)" 256 "pool blocks after reboot"
    must teardown
}

if on_boot 1; then
    run_test environment t_environment
    run_test thin_roundtrip t_thin_roundtrip
    run_test thin_snapshot t_thin_snapshot
    run_test ext4_on_thin fs_on_thin ext4 2
    run_test xfs_on_thin fs_on_thin xfs 3
    run_test deactivate t_deactivate
    run_test write_marker t_write_marker
fi
if on_boot 2; then
    run_test marker_survived t_marker_survived
    run_test pool_survived t_pool_survived
fi
teardown || echo "# WARN: final teardown failed"
