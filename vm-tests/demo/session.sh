#!/bin/sh
# The demo session: each command is echoed with `$ ` before its output.
# Runs on any host with dm-thin (tools/demo) or in the VM (10-demo.sh).
# The devmapper driver (the default) keeps images in the same pool.
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

echo "# images and containers on thin snapshots (the devmapper driver)"
echo "\$ printf '[devmapper]\\nbase_size = \"2G\"\\n' > $ROOT/config.toml   # a smaller base for the demo"
printf '[devmapper]\nbase_size = "2G"\n' >"$ROOT/config.toml"
mkdir -p /tmp/demo-rootfs/etc /tmp/demo-rootfs/srv
echo "hello from the image" >/tmp/demo-rootfs/etc/motd
echo "old" >/tmp/demo-rootfs/srv/old.txt
tar -C /tmp/demo-rootfs -cf /tmp/demo-rootfs.tar .
ts import -c 'CMD ["/bin/sh"]' -m "demo base" /tmp/demo-rootfs.tar demo/base:1
ts create --name web demo/base:1
ts create --name api demo/base:1
mnt=$(thinsnap --root "$ROOT" mount web)
echo "\$ (write into web's rootfs at $mnt)"
echo "changed" >"$mnt/etc/motd"
rm "$mnt/srv/old.txt"
echo "new" >"$mnt/srv/new.txt"
ts unmount web
ts device api
ts diff web
ts commit -m "web changes" -a "demo" web demo/web:1
ts images
ts history demo/web:1
ts ps
ts save -o /tmp/demo-images.tar demo/base:1 demo/web:1
ts rm web api
ts rmi demo/web:1 demo/base:1
ts load -i /tmp/demo-images.tar
ts images
ts rmi demo/web:1 demo/base:1
ts pool devices
ts pool status
ts pool destroy --force
rm -rf /tmp/demo-vm2.img /tmp/demo-rootfs /tmp/demo-rootfs.tar /tmp/demo-images.tar
