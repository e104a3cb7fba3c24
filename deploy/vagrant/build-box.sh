#!/usr/bin/env bash
# Build the Vagrant box of the VM lab: Debian 12 for libvirt (qcow2), from Debian's archive alone (run as root).
#
#   build-box.sh [--add] [--force] [--work DIR]
#
#     --add      also add the box to Vagrant (`vagrant box add`, a new version whenever the image changed)
#     --force    rebuild every stage
#     --work DIR the build cache (default /var/cache/kybernetes/vagrant-box; KYB_BOX_WORK)
#
# Prints the box's name, version and file. Stages, each kept in the work dir and redone only when its inputs
# change (their hash is the stage's stamp), so a second run with nothing changed takes seconds:
#
#   1 base   debootstrap --variant=minbase bookworm with the kernel, systemd, udev, openssh-server, sudo,
#            ifupdown, isc-dhcp-client, grub-pc and rsync (the .debs are cached in the work dir)
#   2 lab    every Debian package the lab needs (PACKAGES of deploy/lib/install.sh: Python, etcd, containerd,
#            runc, CNI plugins, the registry, skopeo, ...) installed with apt into a copy of stage 1; the
#            packaged services (etcd, docker-registry, containerd) disabled: the provisioning runs its own
#   3 python /opt/kybernetes/venv in the root of stage 2: the Python dependencies of requirements.lock from the
#            wheelhouse (deploy/vagrant/wheelhouse.sh, hash-checked, byte-compiled here at native speed), so a
#            VM's provisioning only installs the project on top (deploy/lib/install.sh's dependency stamp); a
#            changed lock redoes this stage alone
#   4 image  a 20 GB sparse raw disk (one partition, ext4), the root filled from stage 2, then: a `vagrant`
#            user with passwordless sudo and Vagrant's insecure public key (the one the Debian package ships),
#            DHCP on eth0 (net.ifnames=0), a serial console, SSH host keys made at first boot, GRUB with
#            root=UUID=..., converted to qcow2
#   5 box    box.img + metadata.json + a box Vagrantfile, tarred; a catalog JSON next to it lets Vagrant keep
#            one version per build (vagrant-libvirt names its base volume after the version, so a new image
#            never reuses a stale volume)
#
# Settings (environment): KYB_BOX_NAME (kybernetes/debian12), KYB_BOX_MIRROR (http://deb.debian.org/debian),
# KYB_BOX_SECURITY_MIRROR (http://deb.debian.org/debian-security), KYB_BOX_DISK_GB (20).
# Needs: debootstrap, qemu-utils, util-linux (losetup, partx, sfdisk), e2fsprogs, and vagrant for --add.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SELF")/../.." && pwd)
WORK=${KYB_BOX_WORK:-/var/cache/kybernetes/vagrant-box}
NAME=${KYB_BOX_NAME:-kybernetes/debian12}
MIRROR=${KYB_BOX_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${KYB_BOX_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
DISK_GB=${KYB_BOX_DISK_GB:-20}
SUITE=bookworm
BASE_PACKAGES=(linux-image-amd64 systemd-sysv udev dbus openssh-server sudo ifupdown isc-dhcp-client netbase
               grub-pc rsync kmod e2fsprogs procps iputils-ping less ca-certificates)

# The Debian packages the lab needs are the ones deploy/lib/install.sh installs on any machine.
# shellcheck source=deploy/lib/install.sh
. "$REPO/deploy/lib/install.sh"
LAB_PACKAGES=("${PACKAGES[@]}")

started=$SECONDS
say() { printf '==> [%4ss] %s\n' "$((SECONDS - started))" "$*" >&2; }
die() { printf 'build-box: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$SELF" | sed -e '$d' -e 's/^# \{0,1\}//'; }

add=no force=no
while [[ $# -gt 0 ]]; do
    case $1 in
        --add) add=yes; shift ;;
        --force) force=yes; shift ;;
        --work) WORK=${2:?--work DIR}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap, chroot, loop devices)"
for tool in debootstrap qemu-img losetup partx sfdisk mkfs.ext4 blkid chroot sha256sum; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install debootstrap qemu-utils util-linux fdisk e2fsprogs)"
done
[[ $add == no ]] || command -v vagrant >/dev/null || die "vagrant is missing (apt-get install vagrant vagrant-libvirt)"
mkdir -p "$WORK/debs"


# ----------------------------------------------------------------------------- helpers

hash_of() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }
stamp_ok() { [[ $force == no && -f $1 && $(cat "$1") == "$2" ]]; }

MOUNTS=()
LOOP=""
cleanup() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
    if [[ -n $LOOP ]]; then
        partx -d "$LOOP" 2>/dev/null || true
        losetup -d "$LOOP" 2>/dev/null || true
    fi
}
trap cleanup EXIT

bind_system() {  # /proc, /sys, /dev into a root for chroot work (undone by unbind_system or at exit)
    local root=$1 d
    for d in proc sys dev dev/pts; do
        mkdir -p "$root/$d"
        case $d in
            proc) mount -t proc proc "$root/proc" ;;
            sys) mount -t sysfs sys "$root/sys" ;;
            dev) mount --bind /dev "$root/dev" ;;
            dev/pts) mount -t devpts devpts "$root/dev/pts" ;;
        esac
        MOUNTS+=("$root/$d")
    done
}

unbind_system() {
    local root=$1 i kept=()
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        if [[ ${MOUNTS[i]} == "$root"/* ]]; then umount -l "${MOUNTS[i]}"; else kept=("${MOUNTS[i]}" "${kept[@]}"); fi
    done
    MOUNTS=("${kept[@]}")
}

bind_debs() {  # the work dir's .deb cache as the root's apt archive (shared by every stage and build)
    local root=$1
    mkdir -p "$root/var/cache/apt/archives"
    mount --bind "$WORK/debs" "$root/var/cache/apt/archives"
    MOUNTS+=("$root/var/cache/apt/archives")
}

in_root() {  # a command in the chroot, with no service started by maintainer scripts
    local root=$1; shift
    chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"
}

# ----------------------------------------------------------------------------- 1 base

stage_base() {
    local root=$WORK/base
    rm -rf "$root"
    mkdir -p "$root"
    local include
    include=$(IFS=,; echo "${BASE_PACKAGES[*]}")
    debootstrap --variant=minbase --cache-dir="$WORK/debs" --include="$include" "$SUITE" "$root" "$MIRROR" \
        > "$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    cat > "$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
    # A lab box: no documentation, manual pages or translations.
    cat > "$root/etc/dpkg/dpkg.cfg.d/01-kyb-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/info/*
EOF
    # Updates of what debootstrap installed, with the same security fixes as the host's Debian.
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod +x "$root/usr/sbin/policy-rc.d"
    # debootstrap leaves its .debs in the root: into the shared cache with them.
    find "$root/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec mv -f -t "$WORK/debs" {} +
    bind_system "$root"
    bind_debs "$root"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    in_root "$root" apt-get update -q >/dev/null
    in_root "$root" apt-get -y -q dist-upgrade > "$WORK/apt-base.log" 2>&1 ||
        { tail -n 30 "$WORK/apt-base.log" >&2; die "apt-get dist-upgrade failed"; }
    # An update may bring a newer kernel beside debootstrap's: keep only the newest.
    local newest pkg
    newest=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n 1)
    # shellcheck disable=SC2016  # dpkg-query's format
    for pkg in $(in_root "$root" dpkg-query -W -f '${Package}\n' 'linux-image-[0-9]*'); do
        [[ $pkg == "linux-image-$newest" ]] || in_root "$root" apt-get -y -q purge "$pkg" >> "$WORK/apt-base.log" 2>&1
    done
    unbind_system "$root"
    rm -f "$root/var/cache/apt/"*.bin
}

# ----------------------------------------------------------------------------- 2 lab packages

stage_lab() {
    local root=$WORK/rootfs
    rm -rf "$root"
    cp -a "$WORK/base" "$root"
    bind_system "$root"
    bind_debs "$root"
    in_root "$root" apt-get update -q >/dev/null
    in_root "$root" apt-get install -y -q --no-install-recommends "${LAB_PACKAGES[@]}" \
        > "$WORK/apt-lab.log" 2>&1 || { tail -n 30 "$WORK/apt-lab.log" >&2; die "apt-get install failed"; }
    # The provisioning runs etcd, the registry and containerd itself (systemd units kyb-*).
    in_root "$root" systemctl disable etcd.service docker-registry.service containerd.service >/dev/null 2>&1 || true
    unbind_system "$root"
    rm -rf "$root/var/lib/apt/lists/"* "$root/usr/sbin/policy-rc.d" "$root/var/cache/apt/"*.bin
    : > "$root/etc/resolv.conf"
}

# ----------------------------------------------------------------------------- 3 python

VENV=/opt/kybernetes/venv
LOCK=$REPO/requirements.lock
WHEELHOUSE=${KYB_WHEELHOUSE:-$REPO/.wheelhouse}

stage_python() {
    local root=$WORK/rootfs
    "$REPO/deploy/vagrant/wheelhouse.sh"
    rm -rf "${root:?}$VENV" "$root/tmp/kyb-wheelhouse"
    cp -a "$WHEELHOUSE" "$root/tmp/kyb-wheelhouse"
    cp "$LOCK" "$root/tmp/kyb-wheelhouse/requirements.lock"
    bind_system "$root"
    in_root "$root" python3 -m venv "$VENV"
    in_root "$root" "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-index \
        --find-links /tmp/kyb-wheelhouse --require-hashes --no-deps -r /tmp/kyb-wheelhouse/requirements.lock \
        > "$WORK/pip-python.log" 2>&1 || { tail -n 30 "$WORK/pip-python.log" >&2; die "pip install failed"; }
    unbind_system "$root"
    # The stamp deploy/lib/install.sh compares: these are the dependencies of this lock.
    sha256sum < "$LOCK" | cut -d' ' -f1 > "$root$VENV/.kybernetes-deps"
    rm -rf "$root/tmp/kyb-wheelhouse"
}

# ----------------------------------------------------------------------------- 4 image

configure_guest() {  # everything that makes the root a Vagrant box (runs on the mounted image)
    local root=$1 uuid=$2 key
    echo kyb-box > "$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tkyb-box\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
    printf 'UUID=%s\t/\text4\terrors=remount-ro\t0\t1\n' "$uuid" > "$root/etc/fstab"
    # Every VM makes its own machine-id and SSH host keys at first boot.
    : > "$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
    cat > "$root/etc/systemd/system/kyb-ssh-hostkeys.service" <<'EOF'
[Unit]
Description=SSH host keys of this machine
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
EOF
    in_root "$root" systemctl enable kyb-ssh-hostkeys.service >/dev/null 2>&1
    # No reverse lookups of the SSH client: the VMs have no DNS.
    printf 'UseDNS no\n' > "$root/etc/ssh/sshd_config.d/kyb.conf"
    # Network: the first NIC by DHCP; Vagrant configures the private network itself.
    cat > "$root/etc/network/interfaces" <<'EOF'
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet dhcp
EOF
    # The vagrant user: passwordless sudo and Vagrant's insecure public key (replaced by Vagrant at first up).
    key=$(find /usr/share/rubygems-integration/all/gems /usr/share/vagrant /opt/vagrant -path '*/keys/vagrant.pub' \
              2>/dev/null | head -n 1 || true)
    [[ -n $key ]] || die "Vagrant's insecure public key (keys/vagrant.pub) not found: is vagrant installed?"
    in_root "$root" id vagrant >/dev/null 2>&1 || in_root "$root" useradd -m -s /bin/bash -U vagrant
    in_root "$root" sh -c 'echo vagrant:vagrant | chpasswd'
    install -d -m 700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
    grep -v '^#' "$key" | grep . > "$root/home/vagrant/.ssh/authorized_keys"
    chown 1000:1000 "$root/home/vagrant/.ssh/authorized_keys"
    chmod 600 "$root/home/vagrant/.ssh/authorized_keys"
    printf 'vagrant ALL=(ALL) NOPASSWD: ALL\nDefaults:vagrant !requiretty\n' > "$root/etc/sudoers.d/vagrant"
    chmod 440 "$root/etc/sudoers.d/vagrant"
    # GRUB on the serial console and the screen, quick, with the root by UUID (without udev, update-grub
    # would write root=/dev/loopNp1). AppArmor off: apparmor.service compiling its profiles took minutes at
    # every boot under software emulation, and nothing of the lab uses it.
    cat > "$root/etc/default/grub" <<'EOF'
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8 net.ifnames=0 biosdevname=0 apparmor=0"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
EOF
}

stage_image() {
    local raw=$WORK/disk.raw mnt=$WORK/mnt uuid part
    rm -f "$raw" "$WORK/box.img"
    truncate -s "${DISK_GB}G" "$raw"
    printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$raw"
    LOOP=$(losetup -f --show "$raw")
    # No udev here: partx makes the partition's device node (losetup -P alone may not).
    partx -a "$LOOP" 2>/dev/null || true
    part=${LOOP}p1
    local waited=0
    until [[ -b $part ]]; do
        (( waited++ < 50 )) || die "no partition device $part"
        sleep 0.1
    done
    mkfs.ext4 -q -L root "$part"
    uuid=$(blkid -s UUID -o value "$part")
    mkdir -p "$mnt"
    mount "$part" "$mnt"
    MOUNTS+=("$mnt")
    cp -a "$WORK/rootfs/." "$mnt/"
    configure_guest "$mnt" "$uuid"
    bind_system "$mnt"
    in_root "$mnt" grub-install --target=i386-pc --modules="part_msdos ext2" "$LOOP" >/dev/null 2>&1 ||
        die "grub-install failed"
    in_root "$mnt" update-grub >/dev/null 2>&1 || die "update-grub failed"
    sed -i -E "s#root=/dev/[a-z0-9]+#root=UUID=$uuid#g" "$mnt/boot/grub/grub.cfg"
    grep -q "root=UUID=$uuid" "$mnt/boot/grub/grub.cfg" || die "grub.cfg names no root=UUID"
    unbind_system "$mnt"
    umount "$mnt"
    MOUNTS=()
    partx -d "$LOOP" 2>/dev/null || true
    losetup -d "$LOOP"
    LOOP=""
    qemu-img convert -O qcow2 "$raw" "$WORK/box.img"
    rm -f "$raw"
}

# ----------------------------------------------------------------------------- 5 box

stage_box() {
    local dir=$WORK/box
    rm -rf "$dir"
    mkdir -p "$dir"
    mv "$WORK/box.img" "$dir/box.img"
    printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %s}\n' "$DISK_GB" > "$dir/metadata.json"
    cat > "$dir/Vagrantfile" <<'EOF'
# The box's defaults (the project's Vagrantfile sets the rest).
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |lv|
    lv.driver = "kvm"
    lv.disk_bus = "virtio"
    lv.nic_model_type = "virtio"
  end
end
EOF
    tar -C "$dir" -cf "$WORK/kybernetes-debian12.box.tmp" metadata.json Vagrantfile box.img
    mv "$WORK/kybernetes-debian12.box.tmp" "$WORK/kybernetes-debian12.box"
    # Keep the image for the next build's comparison only by its hash: the box file holds it.
    rm -rf "$dir"
}

# ----------------------------------------------------------------------------- main

BASE_KEY=$(hash_of "$SUITE" "$MIRROR" "$SECURITY_MIRROR" "${BASE_PACKAGES[*]}" "$(declare -f stage_base)")
LAB_KEY=$(hash_of "$BASE_KEY" "${LAB_PACKAGES[*]}" "$(declare -f stage_lab)")
PYTHON_KEY=$(hash_of "$LAB_KEY" "$(sha256sum < "$LOCK")" "$(declare -f stage_python)")
IMAGE_KEY=$(hash_of "$PYTHON_KEY" "$DISK_GB" "$(declare -f configure_guest stage_image)")
BOX_KEY=$(hash_of "$IMAGE_KEY" "$(declare -f stage_box)")

run_stage() {  # run_stage NUMBER NAME KEY FUNCTION [product that must exist]
    local n=$1 name=$2 key=$3 fn=$4 product=${5:-} t0=$SECONDS
    if stamp_ok "$WORK/$name.stamp" "$key" && [[ -z $product || -e $product ]]; then
        say "$n/5 $name: up to date ($key)"
        return 0
    fi
    say "$n/5 $name: building ..."
    rm -f "$WORK/$name.stamp"
    "$fn"
    echo "$key" > "$WORK/$name.stamp"
    REBUILT=yes
    say "$n/5 $name: done in $((SECONDS - t0))s"
}

BOX_FILE=$WORK/kybernetes-debian12.box
CATALOG=$WORK/kybernetes-debian12.json
# Once added, the box lives in Vagrant: the box file and the stage caches may be removed to save disk, and
# nothing is rebuilt while the inputs are the same.
if [[ $add == yes && $force == no && -f $CATALOG && $(jq -r .key "$CATALOG" 2>/dev/null) == "$BOX_KEY" ]]; then
    version=$(jq -r '.versions[0].version' "$CATALOG")
    if [[ $(vagrant box list --machine-readable 2>/dev/null) == *",box-version,$version"* ]]; then
        say "box $NAME $version ($BOX_KEY) is in Vagrant: nothing to build"
        printf '%s\t%s\t%s\n' "$NAME" "$version" "$CATALOG"
        exit 0
    fi
fi

REBUILT=no
run_stage 1 base "$BASE_KEY" stage_base "$WORK/base/etc/debian_version"
run_stage 2 lab "$LAB_KEY" stage_lab "$WORK/rootfs/etc/debian_version"
run_stage 3 python "$PYTHON_KEY" stage_python "$WORK/rootfs$VENV/.kybernetes-deps"
# The image is only an intermediate of the box: both are remade together.
if ! stamp_ok "$WORK/box.stamp" "$BOX_KEY" || [[ ! -f $WORK/kybernetes-debian12.box ]]; then
    rm -f "$WORK/image.stamp"
fi
run_stage 4 image "$IMAGE_KEY" stage_image
run_stage 5 box "$BOX_KEY" stage_box "$WORK/kybernetes-debian12.box"

if [[ ! -f $CATALOG || $REBUILT == yes || $(jq -r .key "$CATALOG" 2>/dev/null) != "$BOX_KEY" ]]; then
    say "checksumming $BOX_FILE"
    checksum=$(sha256sum "$BOX_FILE" | cut -d' ' -f1)
    version=1.$(date +%s)
    jq -n --arg name "$NAME" --arg version "$version" --arg url "file://$BOX_FILE" --arg sum "$checksum" \
        --arg key "$BOX_KEY" \
        '{name: $name, key: $key, versions: [{version: $version, providers: [{name: "libvirt", url: $url,
          checksum_type: "sha256", checksum: $sum}]}]}' > "$CATALOG.tmp"
    mv "$CATALOG.tmp" "$CATALOG"
fi
version=$(jq -r '.versions[0].version' "$CATALOG")

if [[ $add == yes ]]; then
    if [[ $(vagrant box list --machine-readable 2>/dev/null) == *",box-version,$version"* ]]; then
        say "box $NAME $version is already in Vagrant"
    else
        say "adding box $NAME $version to Vagrant"
        vagrant box add --provider libvirt "$CATALOG" >/dev/null
    fi
fi
say "box $NAME $version: $BOX_FILE ($(du -h "$BOX_FILE" | cut -f1)), catalog $CATALOG"
printf '%s\t%s\t%s\n' "$NAME" "$version" "$CATALOG"
