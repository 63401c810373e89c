. /lib/thinsnap-test.sh
t_ok() { true; }
run_test fine_before_crash t_ok
if on_boot 1; then exit 3; fi
