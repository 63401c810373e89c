. /lib/thinsnap-test.sh
t_bad() { assert_eq "$(echo 1)" 2 "deliberate"; }
if on_boot 2; then run_test deliberately_failing t_bad; fi
