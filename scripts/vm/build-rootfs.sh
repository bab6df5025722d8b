#!/usr/bin/env bash
# Builds the VM test images into OUT_DIR: base.img and ami.img (raw ext4, the whole root
# filesystem), vmlinuz and initrd.img (booted with qemu -kernel/-initrd, so no boot loader or
# partition table). Called by scripts/vm/image.py, which caches OUT_DIR by the hash of every
# input; run as root.
#
# Usage: build-rootfs.sh OUT_DIR OBJECTS_DIR AMI_ARTIFACT AMI_RELEASE MIRROR DEB_CACHE REDIS_HOST STACK
#
# base.img is a stock Debian 12 as the program's default AMI: no release on it, so a boot takes
# the default path (app-release downloads the artifact from "S3" and builds its venv). ami.img
# is the same plus AMI_RELEASE installed by the program's own `app-release install`, as a baked
# AMI (app.source: ami) carries it. Everything test-only lives outside the program's paths: a
# TLS redis-server standing in for ElastiCache, an AWS endpoint stand-in (Parameter Store, Auto
# Scaling, IMDS, and S3 serving OBJECTS_DIR: the release artifacts, the agent packages and their
# signatures), the probe unit.
set -euo pipefail
# Every command here that reads TMPDIR runs in the chroot (debootstrap's second stage, in_root),
# where a host path (a test run's own temp dir, scripts/test.sh) does not exist.
unset TMPDIR
out=$1 objects=$2 ami_artifact=$3 ami_release=$4 mirror=$5 deb_cache=$6 redis_host=$7 stack=$8
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
guest=$here/guest
rootfs=$out/rootfs

# What the units need from Debian: cloud-init and python3, which an official Debian 12 AMI
# carries, and boto3 and venv, which the user-data's `packages` step installs there (preinstalled
# here: the guest has no network to apt from; docs/vm.md, "The boot's order"), plus the test
# stand-ins' needs (redis-server, openssl). python3-cffi-backend explicitly, or
# python3-cryptography (and with it cloud-init) is left unconfigured under minbase.
packages=(
  linux-image-cloud-amd64 initramfs-tools systemd-sysv udev dbus
  cloud-init python3 python3-venv python3-boto3 python3-cffi-backend python3-yaml gpgv
  redis-server redis-tools openssl ca-certificates procps iproute2
)

mkdir -p "$out" "$deb_cache"
rm -rf "$rootfs"
include=$(IFS=,; echo "${packages[*]}")
debootstrap --variant=minbase --include="$include" --cache-dir="$deb_cache" \
  bookworm "$rootfs" "$mirror" >"$out/debootstrap.log" 2>&1 \
  || { tail -30 "$out/debootstrap.log" >&2; exit 1; }

mounted=()
cleanup() { for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[i]}" || true; done; }
trap cleanup EXIT
in_root() { chroot "$rootfs" "$@"; }

# --- test stand-ins --------------------------------------------------------------------------
# A throwaway CA, trusted system-wide like Amazon's CA is on a real instance (so the program's
# broker URL needs no ssl_ca_certs and boto3 trusts the AWS stand-in), a redis-server
# certificate for $redis_host and one for the AWS stand-in on 127.0.0.1.
tls=$out/tls
mkdir -p "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=vm-test CA" \
  -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
issue() {  # NAME SUBJECT_ALT_NAME
  openssl req -newkey rsa:2048 -nodes -subj "/CN=vm-test $1" \
    -keyout "$tls/$1.key" -out "$tls/$1.csr" 2>/dev/null
  openssl x509 -req -in "$tls/$1.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 3650 -extfile <(printf 'subjectAltName=%s\n' "$2") -out "$tls/$1.pem" 2>/dev/null
}
issue redis "DNS:$redis_host"
issue aws "IP:127.0.0.1"
install -m 0644 "$tls/ca.pem" "$rootfs/usr/local/share/ca-certificates/vm-test-ca.crt"
in_root update-ca-certificates >/dev/null
install -d -m 0750 "$rootfs/etc/redis/tls"
install -m 0640 "$tls/redis.pem" "$tls/redis.key" "$rootfs/etc/redis/tls/"
in_root chown -R root:redis /etc/redis/tls
install -d -m 0700 "$rootfs/etc/vm-test" "$rootfs/etc/vm-test/tls"
install -m 0600 "$tls/aws.pem" "$tls/aws.key" "$rootfs/etc/vm-test/tls/"
rm -rf "$tls"

# The AUTH token, alphanumeric like the program's; only the stand-ins know it, the program's
# units learn it from "Parameter Store" at boot like on AWS.
alphanumeric() { python3 -c "import secrets, string; print(''.join(secrets.choice(string.ascii_letters + string.digits) for _ in range($1)))"; }
token=$(alphanumeric 40)
secret_key=$(alphanumeric 50)
cat >>"$rootfs/etc/redis/redis.conf" <<CONF

# vm-test: ElastiCache stand-in, TLS only, AUTH with the token (later directives win)
port 0
tls-port 6379
tls-cert-file /etc/redis/tls/redis.pem
tls-key-file /etc/redis/tls/redis.key
tls-ca-cert-file /usr/local/share/ca-certificates/vm-test-ca.crt
tls-auth-clients no
requirepass $token
CONF

# The SecureStrings the program creates; the live release parameter comes with each boot's data.
cat >"$rootfs/etc/vm-test/parameters.json" <<JSON
{"/django-stack/$stack/redis/auth-token": {"type": "SecureString", "value": "$token"},
 "/django-stack/$stack/django/secret-key": {"type": "SecureString", "value": "$secret_key"}}
JSON
chmod 0600 "$rootfs/etc/vm-test/parameters.json"
# No credentials: boto3 takes the instance role's from IMDS, as on EC2. IMDS calls get more time
# than botocore's default 1 s x 1 attempt: under TCG the stand-in can be that slow to answer.
cat >"$rootfs/etc/vm-test/aws.env" <<ENV
AWS_ENDPOINT_URL_SSM=https://127.0.0.1:4443
AWS_ENDPOINT_URL_S3=https://127.0.0.1:4443
AWS_ENDPOINT_URL_AUTOSCALING=https://127.0.0.1:4443
AWS_METADATA_SERVICE_TIMEOUT=5
AWS_METADATA_SERVICE_NUM_ATTEMPTS=3
ENV
install -d "$rootfs/var/lib/vm-test"
cp -r "$objects" "$rootfs/var/lib/vm-test/s3"

install -d "$rootfs/usr/local/lib/vm-test"
install -m 0644 "$guest/aws_standin.py" "$guest/vmtest_data.py" "$guest/program_files.py" "$guest/probe.py" "$guest/app_side.py" \
  "$guest/host_link.py" "$guest/running_stack.py" "$rootfs/usr/local/lib/vm-test/"
# The machine contract the probe imports (`from userdata import layout`), beside it.
install -D -m 0644 "$repo/userdata/layout.py" "$rootfs/usr/local/lib/vm-test/userdata/layout.py"
install -m 0644 "$guest/aws-standin.socket" "$guest/aws-standin.service" "$guest/test-probe.service" \
  "$guest/vm-test-host-link.service" "$guest/vm-test-running-stack.service" "$rootfs/etc/systemd/system/"
for unit in app-release.service app-secrets.service app-warm-stop.service app-boot-failed@.service \
  cloud-final.service; do
  install -d "$rootfs/etc/systemd/system/$unit.d"
  install -m 0644 "$guest/aws-endpoints-vm-test.conf" "$rootfs/etc/systemd/system/$unit.d/50-vm-test.conf"
done
install -m 0644 "$guest/cloud.cfg" "$rootfs/etc/cloud/cloud.cfg.d/90-vm-test.cfg"
in_root systemctl enable --quiet aws-standin.socket test-probe.service vm-test-host-link.service \
  vm-test-running-stack.service redis-server.service
# Results go to the serial console: no login prompt interleaving with them; nothing else
# scheduled that could run mid-test.
in_root systemctl mask --quiet serial-getty@ttyS0.service getty@tty1.service \
  apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer

# --- the machine ---------------------------------------------------------------------------
echo vm-test >"$rootfs/etc/hostname"
printf '127.0.0.1 localhost vm-test\n127.0.0.1 %s\n::1 localhost ip6-localhost\n' "$redis_host" >"$rootfs/etc/hosts"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$rootfs/etc/fstab"
# No package sources: the guest has no network, and cloud-init's `packages:` runs `apt-get
# update` before installing; with no sources that succeeds and the (already installed)
# packages are found in dpkg's status, so the program's user-data still ends `status: done`.
: >"$rootfs/etc/apt/sources.list"
rm -rf "$rootfs"/etc/apt/sources.list.d/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*
in_root passwd --lock root >/dev/null

kernels=("$rootfs"/boot/vmlinuz-*) initrds=("$rootfs"/boot/initrd.img-*)
cp "${kernels[-1]}" "$out/vmlinuz"
cp "${initrds[-1]}" "$out/initrd.img"
rm -f "$out/base.img" "$out/ami.img"
mkfs.ext4 -q -F -L root -d "$rootfs" "$out/base.img" 2G

# --- the baked AMI: the same machine plus the release, installed by the program's own code -----
mount -t proc proc "$rootfs/proc" && mounted+=("$rootfs/proc")
mount --bind /dev "$rootfs/dev" && mounted+=("$rootfs/dev")
install -m 0755 "$repo/userdata/files/app-release" "$rootfs/tmp/app-release"
install -m 0644 "$ami_artifact" "$rootfs/tmp/release.tar.gz"
install -m 0644 "$ami_artifact.sha256" "$rootfs/tmp/release.tar.gz.sha256"  # app-release checks it first
in_root /usr/bin/python3 /tmp/app-release install "$ami_release" --artifact /tmp/release.tar.gz
# cloud-init writes the program's own copy at boot; the image keeps only the installed release
# (not activated: the program's app-release.service activates it at boot).
rm -f "$rootfs/tmp/app-release" "$rootfs/tmp/release.tar.gz" "$rootfs/tmp/release.tar.gz.sha256"
cleanup; mounted=()
mkfs.ext4 -q -F -L root -d "$rootfs" "$out/ami.img" 2G
rm -rf "$rootfs"
