#!/bin/sh
# 90-registry: the registry client (pull, push) on the devmapper driver on a
# real kernel, against Debian's docker-registry (distribution 2.8) on the
# VM's loopback. Three roots, each with its own thin pool:
#   r1  imports a small rootfs (a few MiB) as REG/app:v1 and pushes it; the
#       digest push prints is the sha256 of the manifest the registry serves;
#   r2  pulls it (same digest, same image id), pulls it again ("Image is up
#       to date", no pool growth), pushes it back (same digest), makes a
#       container, writes a file into it, commits REG/app:v2, pushes it, and
#       pushes it again as REG/copy:v2 (same manifest, same digest);
#   r3  (fresh) pulls REG/copy:v2 and REG/app@DIGEST: the digests printed by
#       push and pull are equal, the image id is equal, a second pull adds
#       nothing to the pool, and the files of a container of the pulled image
#       (mounted, and exported) are those of r2's container, bit for bit.
# Then rm and rmi everything: each pool is back to its base device and its
# starting usage, and clean.
# shellcheck source=common.sh
. /suite/common.sh

PORT=5090
REG=127.0.0.1:$PORT
RD=$T_STATE/registry        # the registry's config, log and storage
PIDFILE=$RD/pid
R1=$T_STATE/r1
R2=$T_STATE/r2
R3=$T_STATE/r3
W=$T_STATE/w                # rootfs, trees, recorded ids and digests
# No login is needed; keep any credentials file away from /root.
export THINSNAP_AUTH_FILE="$T_STATE/auth.json"

on() { _r=$1; shift; thinsnap --driver devmapper --root "$_r" "$@"; }
# reg ROOT pull|push ...: the same with the progress display (stderr) in
# $W/progress, one plain line per event, which the tests read. It is kept off
# the console, which is a terminal: before 2969d36 the bars drawn there left
# their last line without a newline, and the next @@ marker, landing on that
# line, was lost to the host.
reg() { _r=$1; shift; on "$_r" "$@" 2>"$W/progress"; }
prog() { tr '\n' '|' <"$W/progress" | head -c 600; }
used_of() { ROOT=$1 status_num data_space used; }
ndev_of() { ROOT=$1 status_num - thin_devices; }

# rec NAME VALUE / got NAME: values handed from one test to the next.
rec() { echo "$2" >"$W/$1"; }
got() { cat "$W/$1" 2>/dev/null || fail "no $1 recorded (an earlier test failed)"; }

# http PATH [HEADER]: GET from the registry, body on stdout.
http() {
    if [ -n "${2:-}" ]; then
        timeout 10 wget -q -O- --header "$2" "http://$REG$1"
    else
        timeout 10 wget -q -O- "http://$REG$1"
    fi
}

# digest_of OUTPUT: the sha256:... of a push ("TAG: digest: D size: N") or
# pull ("Digest: D") output.
digest_of() {
    echo "$1" | sed -n -e 's/^[^ ]*: digest: \(sha256:[0-9a-f]\{64\}\) size: [0-9]*$/\1/p' \
        -e 's/^Digest: \(sha256:[0-9a-f]\{64\}\)$/\1/p' | head -n 1
}

# image_id ROOT REF: the full image id, from inspect.
image_id() {
    on "$1" inspect "$2" | awk -F'"' '$2 == "Id" { print $4; exit }'
}

# tree DIR: one sorted line per entry: type, mode, sha256 (files) or target
# (symlinks), path. ext4's lost+found of the base device is left out (85
# checks that an export has none).
tree() {
    (
        cd "$1" || exit 1
        find . -mindepth 1 | grep -v '^\./lost+found\(/\|$\)' | sort | while read -r p; do
            if [ -L "$p" ]; then
                echo "l $(readlink "$p") $p"
            elif [ -f "$p" ]; then
                echo "f $(stat -c %a "$p") $(sha256_of "$p") $p"
            elif [ -d "$p" ]; then
                echo "d $(stat -c %a "$p") $p"
            else
                echo "? $p"
            fi
        done
    )
}

# new_root DIR: a pool with a 1G ext4 base device, made by importing and
# removing a throwaway image (the base device stays for the pool's life);
# its data usage then is the start to come back to.
new_root() {
    must thinsnap --root "$1" pool create --data-size 4G --metadata-size 64M >/dev/null
    printf '[devmapper]\nbase_size = "1G"\n[registry]\nretries = 2\ntimeout_secs = 60\n' >"$1/config.toml"
    mkdir -p "$W/seed"
    echo seed >"$W/seed/seed"
    tar -C "$W/seed" -cf "$W/seed.tar" .
    on "$1" import "$W/seed.tar" seed:0 >/dev/null || fail "seed import in $1"
    must on "$1" rmi seed:0 >/dev/null
    u=$(used_of "$1")
    echo "$u" >"$1.start"
    t_log "$(basename "$1"): data used with the base device only: $u"
}

stop_registry() {
    [ -s "$PIDFILE" ] || return 0
    _pid=$(cat "$PIDFILE")
    kill "$_pid" 2>/dev/null || true
    _i=0
    # A zombie still answers kill -0: look at the state too.
    while [ $_i -lt 50 ] && kill -0 "$_pid" 2>/dev/null &&
        [ "$(awk '{ print $3 }' "/proc/$_pid/stat" 2>/dev/null)" != Z ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    if kill -0 "$_pid" 2>/dev/null &&
        [ "$(awk '{ print $3 }' "/proc/$_pid/stat" 2>/dev/null)" != Z ]; then
        kill -9 "$_pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
}

# 1. docker-registry on 127.0.0.1, filesystem storage on /scratch.
t_registry_serves_v2() {
    command -v docker-registry >/dev/null || fail "docker-registry is not in the VM (vm-extra-bins)"
    rm -rf "$RD" "$W" "$R1" "$R2" "$R3"
    mkdir -p "$RD/data" "$W"
    # The VM has no network set up; the loopback is enough.
    ip link set lo up || ifconfig lo 127.0.0.1 up || fail "cannot bring up lo"
    cat >"$RD/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $RD/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $REG
  secret: thinsnap-vm-test
health:
  storagedriver:
    enabled: false
EOF
    docker-registry serve "$RD/config.yml" >"$RD/log" 2>&1 &
    echo $! >"$PIDFILE"
    pid=$(cat "$PIDFILE")
    read -r t0 _ </proc/uptime
    i=0
    body=
    while [ $i -lt 150 ]; do
        kill -0 "$pid" 2>/dev/null || fail "docker-registry exited: $(tail -n 5 "$RD/log" | tr '\n' '|')"
        body=$(http /v2/ 2>/dev/null) && break
        sleep 0.2
        i=$((i + 1))
    done
    read -r t1 _ </proc/uptime
    assert_eq "$body" "{}" "GET /v2/ (log: $(tail -n 5 "$RD/log" | tr '\n' '|'))"
    t_log "docker-registry (pid $pid) answers on $REG after $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
}

# 2. r1: a small image, imported and pushed.
t_push_imported_image() {
    new_root "$R1"
    r=$W/rootfs
    mkdir -p "$r/bin" "$r/etc" "$r/usr/lib" "$r/srv"
    cp /bin/busybox "$r/bin/busybox"
    ln -s busybox "$r/bin/sh"
    echo "base motd" >"$r/etc/motd"
    rand_file "$r/usr/lib/data.bin" 2
    echo "readme" >"$r/srv/readme"
    tar -C "$r" -cf "$W/rootfs.tar" .
    tree "$r" >"$W/tree.v1"
    id1=$(on "$R1" import "$W/rootfs.tar" "$REG/app:v1") || fail "import: $id1"
    rec id1 "$id1"
    out=$(reg "$R1" push "$REG/app:v1") || fail "push of v1: $out $(prog)"
    d1=$(digest_of "$out")
    [ -n "$d1" ] || fail "no digest in the output of push: $out"
    assert_contains "$out" "v1: digest: $d1 size: " "push output"
    rec d1 "$d1"
    t_log "r1: $REG/app:v1 is $id1, pushed as $d1"
    assert_contains "$(on "$R1" inspect "$REG/app:v1")" "\"$REG/app@$d1\"" "RepoDigests after push"
    # The registry's side: the tag is listed and the manifest it serves
    # hashes to the digest push printed.
    assert_contains "$(http /v2/app/tags/list)" '"v1"' "tags/list"
    http "/v2/app/manifests/$d1" "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json" >"$W/manifest.v1" ||
        fail "GET /v2/app/manifests/$d1 failed"
    assert_eq "sha256:$(sha256_of "$W/manifest.v1")" "$d1" "sha256 of the manifest the registry serves"
}

# 3. r2: pulled into a second pool.
t_pull_into_second_pool() {
    new_root "$R2"
    d1=$(got d1)
    id1=$(got id1)
    out=$(reg "$R2" pull "$REG/app:v1") || fail "pull: $out $(prog)"
    assert_eq "$(digest_of "$out")" "$d1" "digest printed by pull vs push"
    assert_contains "$out" "Status: Downloaded newer image for $REG/app:v1"
    assert_eq "$(image_id "$R2" "$REG/app:v1")" "$id1" "image id in r2 vs r1"
    assert_contains "$(on "$R2" inspect "$REG/app:v1")" "\"$REG/app@$d1\"" "RepoDigests after pull"
    # The repository, not REPO:TAG: as in Docker, a tag pattern does not
    # match the digest reference, so the DIGEST column would be <none>.
    line=$(on "$R2" images --digests --no-trunc "$REG/app" | awk -v r="$REG/app" '$1 == r && $2 == "v1"')
    assert_contains "$line" " $d1 " "images --digests"
    assert_contains "$line" " $id1 " "images --no-trunc"
    t_log "r2: data used after the pull: $(used_of "$R2") (start $(cat "$R2.start"))"
}

# 4. the same pull again: nothing to do, nothing written to the pool.
t_second_pull_up_to_date() {
    d1=$(got d1)
    u0=$(used_of "$R2")
    n0=$(ndev_of "$R2")
    out=$(reg "$R2" pull "$REG/app:v1") || fail "second pull: $out $(prog)"
    assert_contains "$out" "Status: Image is up to date for $REG/app:v1"
    assert_eq "$(digest_of "$out")" "$d1" "digest printed by the second pull"
    assert_contains "$(cat "$W/progress")" ": Already exists" "progress of the second pull"
    assert_not_contains "$(cat "$W/progress")" "Downloading" "progress of the second pull"
    u1=$(used_of "$R2")
    t_log "r2: data used before the second pull $u0, after $u1"
    [ "$u1" -le "$u0" ] || fail "the second pull grew the pool from $u0 to $u1 bytes"
    assert_eq "$(ndev_of "$R2")" "$n0" "thin devices after the second pull"
    # A pulled image goes back with the manifest it came with.
    out=$(reg "$R2" push "$REG/app:v1") || fail "push of the pulled v1: $out $(prog)"
    assert_eq "$(digest_of "$out")" "$d1" "digest of the pulled image pushed back"
    assert_not_contains "$(cat "$W/progress")" "Pushed" "nothing uploaded again: $(prog)"
}

# 5. r2: a container of the pulled image, a file written, committed, pushed.
t_commit_and_push() {
    id1=$(got id1)
    must on "$R2" create --name c1 "$REG/app:v1" >/dev/null
    m=$(on "$R2" mount c1) || fail "mount c1: $m"
    assert_eq "$(cat "$m/etc/motd")" "base motd" "the pulled image's file in the container"
    rand_file "$m/srv/app.bin" 1
    echo "motd v2" >"$m/etc/motd"
    rec appsha "$(sha256_of "$m/srv/app.bin")"
    must on "$R2" unmount c1
    assert_eq "$(on "$R2" diff c1)" "C /etc
C /etc/motd
C /srv
A /srv/app.bin" "diff of c1"
    id2=$(on "$R2" commit -m "add app.bin" c1 "$REG/app:v2") || fail "commit: $id2"
    assert_eq "$(image_id "$R2" "$REG/app:v2")" "$id2" "id printed by commit"
    assert_ne "$id2" "$id1" "the committed image is a new one"
    rec id2 "$id2"
    out=$(reg "$R2" push "$REG/app:v2") || fail "push of v2: $out $(prog)"
    d2=$(digest_of "$out")
    [ -n "$d2" ] || fail "no digest in the output of push: $out"
    assert_contains "$out" "v2: digest: $d2 size: " "push output"
    rec d2 "$d2"
    assert_contains "$(on "$R2" inspect "$REG/app:v2")" "\"$REG/app@$d2\"" "RepoDigests after push"
    http "/v2/app/manifests/$d2" "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json" >"$W/manifest.v2" ||
        fail "GET /v2/app/manifests/$d2 failed"
    assert_eq "sha256:$(sha256_of "$W/manifest.v2")" "$d2" "sha256 of the manifest the registry serves"
    # The same image under another repository: the same manifest.
    must on "$R2" tag "$REG/app:v2" "$REG/copy:v2"
    out=$(reg "$R2" push "$REG/copy:v2") || fail "push of copy:v2: $out $(prog)"
    assert_eq "$(digest_of "$out")" "$d2" "digest of the same image pushed to another repository"
    assert_not_contains "$(cat "$W/progress")" ": Pushed" "blobs mounted or present, none uploaded: $(prog)"
    t_log "push to another repository: $(prog)"
    t_log "r2: $REG/app:v2 is $id2, pushed as $d2 (also as $REG/copy:v2)"
    # What the re-pulled image must hold: v1's tree with the changes.
    (
        grep -v ' \./etc/motd$' "$W/tree.v1"
        echo "f 644 $(echo "motd v2" | sha256sum | cut -d' ' -f1) ./etc/motd"
        echo "f 644 $(got appsha) ./srv/app.bin"
    ) | sort >"$W/tree.want"
}

# 6. r3, a fresh pool: pulled back, under another name and by digest.
t_pull_back_in_fresh_pool() {
    new_root "$R3"
    d2=$(got d2)
    id2=$(got id2)
    out=$(reg "$R3" pull "$REG/copy:v2") || fail "pull of copy:v2: $out $(prog)"
    assert_eq "$(digest_of "$out")" "$d2" "digest printed by pull vs push"
    assert_contains "$out" "Status: Downloaded newer image for $REG/copy:v2"
    assert_eq "$(image_id "$R3" "$REG/copy:v2")" "$id2" "image id in r3 vs r2"
    line=$(on "$R3" images --digests --no-trunc "$REG/copy" | awk '$2 == "v2"')
    assert_contains "$line" " $d2 " "images --digests"
    assert_contains "$line" " $id2 " "images --no-trunc"
    # By digest, from the other repository: the layers are all here.
    u0=$(used_of "$R3")
    n0=$(ndev_of "$R3")
    out=$(reg "$R3" pull "$REG/app@$d2") || fail "pull by digest: $out $(prog)"
    assert_eq "$(digest_of "$out")" "$d2" "digest printed by the pull by digest"
    assert_not_contains "$(cat "$W/progress")" "Downloading" "the layers were all here: $(prog)"
    out=$(reg "$R3" pull "$REG/app@$d2") || fail "second pull by digest: $out $(prog)"
    assert_contains "$out" "Status: Image is up to date for $REG/app@$d2"
    u1=$(used_of "$R3")
    t_log "r3: data used before the pulls of the known image $u0, after $u1"
    [ "$u1" -le "$u0" ] || fail "pulls of an image already here grew the pool from $u0 to $u1 bytes"
    assert_eq "$(ndev_of "$R3")" "$n0" "thin devices after the pulls of a known image"
    ins=$(on "$R3" inspect "$REG/copy:v2")
    assert_contains "$ins" "\"$REG/copy@$d2\"" "RepoDigests"
    assert_contains "$ins" "\"$REG/app@$d2\"" "RepoDigests"
    must on "$R3" tag "$REG/copy:v2" checked:v2
}

# 7. the committed file, bit for bit, in a container of the re-pulled image.
t_committed_file_identical() {
    must on "$R3" create --name chk checked:v2 >/dev/null
    m=$(on "$R3" mount chk) || fail "mount chk: $m"
    assert_file_sha "$m/srv/app.bin" "$(got appsha)" "the committed file, mounted"
    assert_eq "$(cat "$m/etc/motd")" "motd v2"
    must on "$R3" unmount chk
    rm -rf "$W/back" "$W/back.tar"
    mkdir -p "$W/back"
    must on "$R3" export -o "$W/back.tar" chk
    tar -C "$W/back" -xf "$W/back.tar" || fail "unpacking the export"
    tree "$W/back" | sort >"$W/tree.back"
    cmp -s "$W/tree.want" "$W/tree.back" ||
        fail "the re-pulled image differs from r2's container: $(diff "$W/tree.want" "$W/tree.back" | grep '^[-+][^-+]' | head -n 8 | tr '\n' '|')"
    t_log "r3: $(wc -l <"$W/tree.back") entries identical to r2's container"
}

# all_gone ROOT: only the base device, one thin id, a clean pool, the
# starting usage.
all_gone() {
    devs=$(thinsnap --root "$1" pool devices)
    assert_eq "$(echo "$devs" | awk '$3 == "snapshot"' | wc -l)" 0 "layer or container devices left in $1: $devs"
    assert_eq "$(ndev_of "$1")" 1 "thin ids in use in $1"
    out=$(thinsnap --root "$1" pool check) || fail "pool check of $1: $out"
    assert_contains "$out" "pool is clean"
    u=$(used_of "$1")
    s=$(cat "$1.start")
    t_log "$(basename "$1"): data used after rm and rmi $u (start $s)"
    [ "$u" -le "$s" ] || fail "$1: usage $u is above the starting $s"
}

# 8. rm and rmi everything; each pool back to where it started.
t_rm_rmi_back_to_start() {
    must on "$R3" rm -f chk >/dev/null
    # The digest reference first, then the tags: the image goes with the
    # last name. (Before 522cac3, removing the last tag deleted the image
    # even while a digest reference of another repository was left; this
    # order does not depend on that rule.)
    must on "$R3" rmi "$REG/app@$(got d2)" checked:v2 "$REG/copy:v2" >/dev/null
    assert_eq "$(on "$R3" images -aq | wc -l)" 0 "images left in r3"
    must on "$R2" rm -f c1 >/dev/null
    must on "$R2" rmi "$REG/copy:v2" "$REG/app:v2" "$REG/app:v1" >/dev/null
    assert_eq "$(on "$R2" images -aq | wc -l)" 0 "images left in r2"
    must on "$R1" rmi "$REG/app:v1" >/dev/null
    assert_eq "$(on "$R1" images -aq | wc -l)" 0 "images left in r1"
    all_gone "$R1"
    all_gone "$R2"
    all_gone "$R3"
}

# 9. the pools destroyed, the registry stopped.
t_cleanup() {
    t_defer stop_registry
    for r in "$R1" "$R2" "$R3"; do
        if [ -d "$r/pool" ]; then
            must thinsnap --root "$r" pool destroy --force >/dev/null
        fi
    done
    rm -rf "$W" "$R1" "$R2" "$R3"
}

if on_boot 1; then
    # Should the script die between tests, the registry must not keep
    # /scratch busy at shutdown (subshells do not inherit this trap).
    trap stop_registry EXIT
    run_test registry_serves_v2 t_registry_serves_v2
    run_test push_imported_image t_push_imported_image
    run_test pull_into_second_pool t_pull_into_second_pool
    run_test second_pull_up_to_date_no_growth t_second_pull_up_to_date
    run_test commit_and_push t_commit_and_push
    run_test pull_back_in_fresh_pool t_pull_back_in_fresh_pool
    run_test committed_file_identical t_committed_file_identical
    run_test rm_rmi_back_to_start t_rm_rmi_back_to_start
    run_test cleanup t_cleanup
fi
