# shellcheck shell=sh
# Helpers shared by the thinsnap VM scenarios (sourced, not run: the runner
# only runs /suite/[0-9]*.sh). Each scenario uses its own root under its
# per-script state dir on /scratch, so pools of different scripts never meet.
# shellcheck source=../lib/thinsnap-test.sh
. /lib/thinsnap-test.sh

: "${ROOT:=$T_STATE/root}"
export ROOT

ts() { thinsnap --root "$ROOT" "$@"; }

# rc_of CMD...: print the exit code of CMD (never fails under set -e).
rc_of() {
    _rc=0
    "$@" >/dev/null 2>&1 || _rc=$?
    echo "$_rc"
}

# expect_rc CODE CMD...: CMD must exit with CODE; its stderr is kept in $ERR_OUT.
ERR_OUT=/tmp/expect_rc.err
expect_rc() {
    _want=$1
    shift
    _rc=0
    "$@" >/dev/null 2>"$ERR_OUT" || _rc=$?
    [ "$_rc" = "$_want" ] || fail "exit $_rc, expected $_want: $* ($(head -c 300 "$ERR_OUT"))"
}

# mapped_of NAME: mapped bytes of a volume, from `volume ls --json`.
mapped_of() {
    ts volume ls --json | awk -v n="$1" '
        /"name":/ { v = $2; gsub(/[",]/, "", v); cur = v }
        /"mapped":/ { v = $2; gsub(/[,]/, "", v); if (cur == n) print v }'
}

# status_num SECTION KEY: a number from `pool status --json` (SECTION may be
# "-" for a top-level key).
status_num() {
    ts pool status --json | awk -v s="\"$1\"" -v k="\"$2\":" '
        s == "\"-\"" || index($0, s) { in_s = 1 }
        in_s && index($0, k) { v = $2; gsub(/[,]/, "", v); print v; exit }'
}

# alloc_kb FILE: disk space FILE really uses, in KiB.
alloc_kb() { du -k "$1" | cut -f1; }

# dm_name_of VOLUME: the device-mapper name behind a volume's path.
dm_name_of() { basename "$(ts volume path "$1")"; }

# dm_state NAME: ACTIVE or SUSPENDED, from dmsetup (verification only).
dm_state() { dmsetup info "$1" 2>/dev/null | awk '/^State:/ { print $2 }'; }

# mkfs_mount DEV DIR: ext4 as Docker makes it, mounted at DIR.
mkfs_mount() {
    mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$1" >/dev/null
    mkdir -p "$2"
    mount "$1" "$2"
}

# rand_file PATH MIB: MIB MiB of random bytes.
rand_file() { dd if=/dev/urandom of="$1" bs=1M count="$2" 2>/dev/null; }
