# shellcheck shell=sh
# thinsnap VM test library (busybox ash). Installed in the VM as
# /lib/thinsnap-test.sh; suite scripts start with:
#
#     . /lib/thinsnap-test.sh
#
# See vm-tests/lib/README.md for the full interface. In short:
#
#   run_test NAME FUNC [ARGS...]   run FUNC in a subshell under `set -e`;
#                                  prints @@RESULT PASS|FAIL for NAME
#   t_pass NAME / t_fail NAME REASON / t_skip NAME REASON
#                                  report a result directly
#   fail REASON...                 (inside a test) fail now with REASON
#   must CMD...                    (inside a test) run CMD, fail if it fails
#   t_defer 'SHELL CODE'           (inside a test) cleanup, run after the test
#                                  in reverse order, pass or fail
#   assert_eq ACTUAL EXPECTED [MSG]      assert_ne A B [MSG]
#   assert_contains HAYSTACK NEEDLE [MSG] assert_not_contains HAYSTACK NEEDLE [MSG]
#   assert_file_sha FILE SHA256          assert_exists PATH   assert_not_exists PATH
#   assert_cmd_fails CMD...              (CMD must exit non-zero)
#   on_boot N                      true when this is boot N (VM_BOOT = N)
#   sha256_of FILE                 print the hex sha256 of FILE
#   t_log MSG...                   comment line on the console ("# MSG")
#
# Environment (exported by /init): VM_BOOT, VM_BOOTS, SCRATCH=/scratch,
# TMPDIR=/scratch/tmp, T_SCRIPT (e.g. "00-smoke"), T_STATE (per-script dir on
# /scratch that survives between boots), SUITE_DIR=/suite, VM_HAVE_THINSNAP,
# THINSNAP (path of the binary, if included), DM_DISABLE_UDEV=1.

: "${VM_BOOT:=1}"
: "${VM_BOOTS:=1}"
: "${SCRATCH:=/scratch}"
: "${T_SCRIPT:=$(basename "$0" .sh)}"
: "${T_RESULTS:=/run/thinsnap/results}"
: "${T_STATE:=$SCRATCH/state/$T_SCRIPT}"
export VM_BOOT VM_BOOTS SCRATCH T_SCRIPT T_RESULTS T_STATE

# Per-test bookkeeping files (in RAM, not on /scratch). Every process start
# costs ~0.1 s under TCG, so the library avoids external commands.
_T_WORK=/run/thinsnap/t.$$
_T_REASON=$_T_WORK/reason
_T_DEFER=$_T_WORK/defer
[ -d "$T_STATE" ] || mkdir -p "$T_STATE"
[ -d "$_T_WORK" ] || mkdir -p "$_T_WORK"

t_log() { echo "# $*"; }

# Centiseconds since boot (busybox date has no %N; /proc/uptime is enough).
_t_now_cs() {
    read -r _t_up _t_rest </proc/uptime
    _t_s=${_t_up%.*}
    _t_c=${_t_up#*.}
    _t_c=${_t_c#0}
    echo $((_t_s * 100 + _t_c))
}

_t_fmt_cs() {
    _t_r=$(($1 % 100))
    [ "$_t_r" -lt 10 ] && _t_r=0$_t_r
    echo "$(($1 / 100)).${_t_r}s"
}

# Test names: no whitespace; qualified with the script name.
_t_qual() {
    _t_n=$1
    case $_t_n in *[[:space:]]*) _t_n=$(echo "$_t_n" | tr -s ' \t' '__') ;; esac
    case $_t_n in
        *:*) echo "$_t_n" ;;
        *) echo "$T_SCRIPT:$_t_n" ;;
    esac
}

# _t_report STATUS NAME [DETAIL...]
_t_report() {
    _t_st=$1
    _t_nm=$(_t_qual "$2")
    shift 2
    _t_detail=$*
    case $_t_detail in *"
"*) _t_detail=$(echo "$_t_detail" | tr '\n' ' ') ;; esac
    echo "$_t_st $_t_nm" >>"$T_RESULTS"
    echo "@@RESULT $_t_st $_t_nm${_t_detail:+ $_t_detail}"
}

t_pass() { _t_report PASS "$1" "${2:-}"; }
t_fail() { _t_nm0=$1; shift; _t_report FAIL "$_t_nm0" "${*:-failed}"; }
t_skip() { _t_nm0=$1; shift; _t_report SKIP "$_t_nm0" "${*:-skipped}"; }

on_boot() { [ "$VM_BOOT" = "$1" ]; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# ---------------------------------------------------------------- in a test
# fail REASON... : record REASON and leave the test (exits the subshell).
fail() {
    if [ -n "${_T_IN_TEST:-}" ]; then
        echo "$*" >"$_T_REASON"
        echo "# FAIL: $*"
        exit 1
    fi
    # Outside run_test: report against the script and make the script fail.
    t_fail "script" "$*"
    exit 1
}

must() {
    "$@" && return 0
    _t_rc=$?
    fail "command failed (exit $_t_rc): $*"
}

t_defer() {
    [ -n "${_T_IN_TEST:-}" ] || { echo "# t_defer outside run_test ignored: $*"; return 0; }
    echo "$*" >>"$_T_DEFER"
}

assert_eq() {
    [ "$1" = "$2" ] || fail "${3:-assert_eq}: got '$1', expected '$2'"
}

assert_ne() {
    [ "$1" != "$2" ] || fail "${3:-assert_ne}: both are '$1'"
}

assert_contains() {
    case $1 in
        *"$2"*) return 0 ;;
    esac
    fail "${3:-assert_contains}: '$2' not found in: $(echo "$1" | head -c 300)"
}

assert_not_contains() {
    case $1 in
        *"$2"*) fail "${3:-assert_not_contains}: '$2' unexpectedly found in: $(echo "$1" | head -c 300)" ;;
    esac
    return 0
}

assert_exists() { [ -e "$1" ] || [ -L "$1" ] || fail "${2:-assert_exists}: $1 does not exist"; }
assert_not_exists() {
    if [ -e "$1" ] || [ -L "$1" ]; then fail "${2:-assert_not_exists}: $1 exists"; fi
}

assert_file_sha() {
    [ -e "$1" ] || fail "assert_file_sha: $1 does not exist"
    _t_sha=$(sha256_of "$1") || fail "assert_file_sha: cannot read $1"
    [ "$_t_sha" = "$2" ] || fail "${3:-assert_file_sha}: sha256 of $1 is $_t_sha, expected $2"
}

assert_cmd_fails() {
    if "$@"; then
        fail "assert_cmd_fails: command succeeded: $*"
    fi
    return 0
}

# ------------------------------------------------------------------ runner
# run_test NAME FUNC [ARGS...]
# FUNC runs in a subshell with `set -e` (so run_test must not itself be part
# of an &&/|| list or an `if` condition, or set -e is void inside). Deferred
# cleanups run afterwards, in reverse order. Set T_TRACE=1 for `set -x`.
run_test() {
    _t_name=$(_t_qual "$1")
    shift
    [ $# -ge 1 ] || { t_fail "$_t_name" "run_test: no function given"; return 0; }
    case $- in *e*) set +e ;; esac
    : >"$_T_REASON"
    : >"$_T_DEFER"
    echo "@@BEGIN $_t_name"
    _t_t0=$(_t_now_cs)
    (
        _T_IN_TEST=1
        [ "${T_TRACE:-0}" = 1 ] && set -x
        set -e
        "$@"
    )
    _t_rc=$?
    if [ -s "$_T_DEFER" ]; then
        # reverse order, each in its own subshell, errors only warned about
        tac "$_T_DEFER" >"$_T_DEFER.rev"
        while IFS= read -r _t_cmd; do
            (eval "$_t_cmd") || echo "# WARN: cleanup failed: $_t_cmd"
        done <"$_T_DEFER.rev"
    fi
    _t_dt=$(_t_fmt_cs $(($(_t_now_cs) - _t_t0)))
    if [ "$_t_rc" -eq 0 ]; then
        _t_report PASS "$_t_name" "($_t_dt)"
    else
        if [ -s "$_T_REASON" ]; then
            _t_why=$(cat "$_T_REASON")
        else
            _t_why="exit status $_t_rc (a command failed under set -e)"
        fi
        # kernel messages logged while the test ran (last 30)
        dmesg 2>/dev/null | awk -v t0="$_t_t0" '
            { s = $0; sub(/^\[ */, "", s); if (s + 0 >= t0 / 100) print "# dmesg: " $0 }' | tail -n 30
        _t_report FAIL "$_t_name" "($_t_dt) $_t_why"
    fi
    return 0
}
