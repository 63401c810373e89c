#!/bin/sh
# The demo, run inside the VM by `tools/demo` (not part of the test suite).
# shellcheck source=../lib/thinsnap-test.sh
. /lib/thinsnap-test.sh

t_demo() {
    DEMO_ROOT=$T_STATE/root sh /suite/session.sh
}

run_test demo t_demo
