#!/bin/sh
# The demo session: each command is echoed with `$ ` before its output.
# Runs on any host with dm-thin (tools/demo) or in the VM (10-demo.sh).
set -eu
ROOT=${DEMO_ROOT:?}
run() {
    echo "\$ $*"
    "$@"
}
ts() { run thinsnap --root "$ROOT" "$@"; }

ts pool create --data-size 8G --metadata-size 128M
ts pool status
ts volume create golden --size 1G
dev=$(thinsnap --root "$ROOT" volume path golden)
echo "\$ mkfs.ext4 -q $dev && write a file into it"
mkfs.ext4 -q -F "$dev" >/dev/null
mkdir -p /tmp/demo-mnt
mount "$dev" /tmp/demo-mnt
echo "hello from the golden disk" >/tmp/demo-mnt/hello
umount /tmp/demo-mnt
ts volume deactivate golden
echo "# clone the golden disk for three test VMs: instant, whatever its size"
for i in 1 2 3; do ts volume snapshot golden "vm$i"; done
vm2=$(thinsnap --root "$ROOT" volume path vm2)
mount "$vm2" /tmp/demo-mnt
echo "changed by vm2" >/tmp/demo-mnt/hello
umount /tmp/demo-mnt
vm1=$(thinsnap --root "$ROOT" volume path vm1)
mount -o ro "$vm1" /tmp/demo-mnt
echo "\$ cat vm1:/hello"
cat /tmp/demo-mnt/hello
umount /tmp/demo-mnt
ts volume ls
ts volume export vm2 /tmp/demo-vm2.img
ts volume import vm2-copy /tmp/demo-vm2.img
ts pool devices
ts pool check
ts volume rm vm1 vm2 vm3 vm2-copy
ts pool status
ts pool destroy --force
rm -f /tmp/demo-vm2.img
