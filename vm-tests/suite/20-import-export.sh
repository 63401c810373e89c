#!/bin/sh
# 20-import-export: a raw image with large zero regions imports sparsely
# (pool mapping stays near its non-zero content), exports byte-identical and
# sparse; clones of a golden disk; bad imports leave nothing behind.
# shellcheck source=common.sh
. /suite/common.sh
on_boot 1 || exit 0

IMG=$T_STATE/disk.img

t_setup() {
    must ts pool create --data-size 2G --metadata-size 32M
    rm -f "$IMG"
    truncate -s 256M "$IMG"
    # 4 MiB of data in three places, and 50 MiB of written zeros.
    dd if=/dev/urandom of="$IMG" bs=1M count=1 seek=10 conv=notrunc 2>/dev/null
    dd if=/dev/urandom of="$IMG" bs=1M count=2 seek=100 conv=notrunc 2>/dev/null
    dd if=/dev/zero of="$IMG" bs=1M count=50 seek=150 conv=notrunc 2>/dev/null
    dd if=/dev/urandom of="$IMG" bs=1M count=1 seek=255 conv=notrunc 2>/dev/null
    sha256_of "$IMG" >"$T_STATE/disk.sha"
}

t_import_is_sparse() {
    u0=$(status_num data_space used)
    out=$(ts volume import golden "$IMG") || fail "import failed: $out"
    assert_contains "$out" "4M written"
    m=$(mapped_of golden)
    [ "$m" -ge 4194304 ] && [ "$m" -le 4456448 ] || fail "golden maps $m bytes for 4 MiB of data"
    u1=$(status_num data_space used)
    [ $((u1 - u0)) -le 4456448 ] || fail "pool use grew by $((u1 - u0)) for 4 MiB of data"
    ts volume ls | grep -q '^golden .* no$' || fail "an imported volume is left inactive"
}

t_export_is_identical_and_sparse() {
    must ts volume export golden "$T_STATE/out.img"
    assert_file_sha "$T_STATE/out.img" "$(cat "$T_STATE/disk.sha")"
    assert_eq "$(stat -c %s "$T_STATE/out.img")" 268435456 "exported size"
    k=$(alloc_kb "$T_STATE/out.img")
    [ "$k" -le 8192 ] || fail "export is not sparse: ${k} KiB on disk"
    ts volume ls | grep -q '^golden .* no$' || fail "export left golden active"
}

t_clones_of_a_golden_disk() {
    for i in 1 2 3; do must ts volume snapshot golden "vm$i"; done
    d=$(ts volume path vm2)
    echo "written by vm2" | dd of="$d" bs=512 seek=1000 conv=notrunc 2>/dev/null
    sync
    must ts volume export vm3 "$T_STATE/vm3.img"
    assert_file_sha "$T_STATE/vm3.img" "$(cat "$T_STATE/disk.sha")"
    must ts volume export vm2 "$T_STATE/vm2.img"
    got=$(dd if="$T_STATE/vm2.img" bs=512 skip=1000 count=1 2>/dev/null | head -c 14)
    assert_eq "$got" "written by vm2"
    rm -f "$T_STATE"/vm*.img
}

t_bad_imports_leave_nothing() {
    before=$(ts pool devices --json | sha256sum)
    expect_rc 4 ts volume import golden "$IMG"
    expect_rc 1 ts volume import newone "$T_STATE/missing.img"
    expect_rc 1 ts volume import small "$IMG" --size 1M
    after=$(ts pool devices --json | sha256sum)
    assert_eq "$after" "$before" "devices unchanged by failed imports"
    assert_not_contains "$(ts pool devices)" "partial"
}

t_cleanup() {
    must ts pool destroy --force
    rm -f "$IMG" "$T_STATE/out.img"
}

run_test setup t_setup
run_test import_is_sparse t_import_is_sparse
run_test export_is_identical_and_sparse t_export_is_identical_and_sparse
run_test clones_of_a_golden_disk t_clones_of_a_golden_disk
run_test bad_imports_leave_nothing t_bad_imports_leave_nothing
run_test cleanup t_cleanup
