#!/bin/sh
# 40-crash: kill -9 at every named step of create, snapshot (origin mounted
# and suspended), delete and extend, and kill -9 from outside during an
# import and during a burst of snapshots. Each time the next command
# recovers, `pool check` reports a clean pool, and nothing is left half-done.
# THINSNAP_CRASH_AT makes the process SIGKILL itself at that exact step.
# shellcheck source=common.sh
. /suite/common.sh
on_boot 1 || exit 0

# crash POINT CMD...: CMD must die by SIGKILL at POINT.
crash() {
    _p=$1
    shift
    _rc=0
    THINSNAP_CRASH_AT=$_p "$@" >/dev/null 2>&1 || _rc=$?
    [ "$_rc" = 137 ] || fail "expected death by SIGKILL at $_p, got exit $_rc"
}

clean_check() {
    _out=$(ts pool check) || fail "pool check after $1 is not clean: $_out"
    assert_contains "$_out" "pool is clean"
}

t_setup() {
    must ts pool create --data-size 2G --metadata-size 32M
    must ts volume create origin --size 512M
    d=$(ts volume path origin)
    basename "$d" >"$T_STATE/origin.dm"
    mkfs_mount "$d" /mnt/origin
    rand_file /mnt/origin/data 4
    sync
    sha256_of /mnt/origin/data >"$T_STATE/origin.sha"
}

t_kill_during_snapshot_of_mounted_origin() {
    crash snapshot-suspended ts volume snapshot origin snap1
    assert_eq "$(dm_state "$(cat "$T_STATE/origin.dm")")" SUSPENDED "the kill left the origin suspended"
    ls=$(ts volume ls)
    assert_not_contains "$ls" "snap1" "interrupted snapshot rolled back"
    for n in $(dmsetup ls | awk '{print $1}'); do
        assert_eq "$(dm_state "$n")" ACTIVE "$n resumed by recovery"
    done
    timeout 60 sh -c 'echo alive >/mnt/origin/after && sync' || fail "origin I/O hangs after recovery"
    clean_check snapshot-suspended
    crash snapshot-after-create-snap ts volume snapshot origin snap1
    assert_not_contains "$(ts volume ls)" "snap1"
    clean_check snapshot-after-create-snap
    must ts volume snapshot origin snap1
    m=$(ts volume path snap1)
    mkdir -p /mnt/snap1
    mount "$m" /mnt/snap1
    assert_file_sha /mnt/snap1/data "$(cat "$T_STATE/origin.sha")"
    umount /mnt/snap1
}

t_kill_during_create_and_delete() {
    for p in create-after-intent create-after-message; do
        crash "$p" ts volume create c1 --size 64M
        assert_not_contains "$(ts volume ls)" "c1" "create killed at $p rolled back"
        clean_check "$p"
    done
    must ts volume create c1 --size 64M
    for p in delete-after-intent delete-after-message; do
        must ts volume create "d-$p" --size 64M
        crash "$p" ts volume rm "d-$p"
        assert_not_contains "$(ts volume ls)" "d-$p" "delete killed at $p finished by recovery"
        clean_check "$p"
    done
    # Killed while holding a metadata snapshot (reading what to discard):
    # the next command releases it, finishes the delete, and the data
    # file still gets the volume's space back.
    must ts volume create held --size 64M
    dd if=/dev/urandom of="$(ts volume path held)" bs=1M count=32 oflag=direct 2>/dev/null
    k1=$(alloc_kb "$ROOT/pool/data")
    crash metadata-snap-held ts volume rm held
    pool=$(dmsetup ls --target thin-pool | awk '{ print $1; exit }')
    # thin-pool status: <txid> <meta used/total> <data used/total> <held root> ...
    held_root() { dmsetup status "$pool" | awk '{ print $7 }'; }
    [ "$(held_root)" != "-" ] || fail "the kill should have left a metadata snapshot held"
    assert_not_contains "$(ts volume ls)" "held" "delete killed holding the metadata snapshot finished"
    assert_eq "$(held_root)" "-" "recovery released the metadata snapshot"
    k2=$(alloc_kb "$ROOT/pool/data")
    [ $((k1 - k2)) -ge 30000 ] || fail "data file shrank by $((k1 - k2))K after recovery, expected 32M"
    clean_check metadata-snap-held
}

t_kill_during_extend() {
    crash extend-after-intent ts pool extend --data-size 3G
    assert_eq "$(status_num data_space total)" 2147483648 "status does not activate"
    must ts pool activate
    assert_eq "$(status_num data_space total)" 3221225472 "extend completed by recovery"
    crash extend-suspended ts pool extend --data-size 4G
    must ts volume ls
    for n in $(dmsetup ls | awk '{print $1}'); do
        assert_eq "$(dm_state "$n")" ACTIVE "$n resumed"
    done
    assert_eq "$(status_num data_space total)" 4294967296 "extend completed after a kill while suspended"
    timeout 60 sh -c 'echo alive >/mnt/origin/after2 && sync' || fail "origin I/O hangs"
    clean_check extend
}

t_kill_9_during_import() {
    rand_file "$T_STATE/big.img" 96
    sb=$(sha256_of "$T_STATE/big.img")
    ts volume import big "$T_STATE/big.img" >/dev/null 2>&1 &
    pid=$!
    sleep 1
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rec=$(ts pool activate)
    t_log "after the kill: $rec"
    ls=$(ts volume ls)
    assert_not_contains "$ls" "partial" "no staging volume survives"
    if echo "$ls" | grep -q '^big '; then
        t_log "the import finished before the kill landed"
        # The import finished before the kill: it must be complete.
        must ts volume export big "$T_STATE/big.out"
        assert_file_sha "$T_STATE/big.out" "$sb"
        must ts volume rm big
    else
        t_log "the import was killed part-way"
    fi
    clean_check import
    must ts volume import big "$T_STATE/big.img"
    rm -f "$T_STATE/big.img" "$T_STATE/big.out"
}

t_kill_9_during_snapshot_burst() {
    (for i in 1 2 3 4 5 6 7 8 9 10 11 12; do ts volume snapshot origin "burst$i" >/dev/null 2>&1; done) &
    pid=$!
    sleep 2
    # Kill the loop and whichever thinsnap it is running now.
    for p in $(pidof thinsnap) $pid; do kill -9 "$p" 2>/dev/null || true; done
    wait "$pid" 2>/dev/null || true
    t_log "$(ts volume ls | grep -c '^burst') snapshot(s) made before the kill"
    for n in $(dmsetup ls | awk '{print $1}'); do
        [ "$(dm_state "$n")" = ACTIVE ] || must ts volume ls
    done
    clean_check burst
    timeout 60 sh -c 'echo alive >/mnt/origin/after3 && sync' || fail "origin I/O hangs"
}

t_cleanup() {
    umount /mnt/origin
    must ts pool destroy --force
}

run_test setup t_setup
run_test kill_during_snapshot_of_mounted_origin t_kill_during_snapshot_of_mounted_origin
run_test kill_during_create_and_delete t_kill_during_create_and_delete
run_test kill_during_extend t_kill_during_extend
run_test kill_9_during_import t_kill_9_during_import
run_test kill_9_during_snapshot_burst t_kill_9_during_snapshot_burst
run_test cleanup t_cleanup
