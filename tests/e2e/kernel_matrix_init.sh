#!/bin/sh
# /init of the kernel matrix guest (scripts/kernel_matrix.sh builds the
# initramfs around it): busybox, goerrprof, the gtest binaries and the Go
# targets at their host paths. Mounts what goerrprof needs, runs the checks
# (tests/e2e/kernel_matrix_checks.sh prints the KM_* lines on the serial
# console), then powers off. Whatever happens, the guest ends: a failing
# mount is reported and the checks still run; an init that exits panics
# the kernel, which with panic=-1 and QEMU's -no-reboot ends QEMU.
/bin/busybox --install -s
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp

mnt() { # TYPE DIR
  mkdir -p "$2"
  mount -t "$1" "$1" "$2" 2>/dev/null || echo "KM_WARN mount $1 on $2 failed"
}
mnt proc /proc
mnt sysfs /sys
mnt devtmpfs /dev
mnt tracefs /sys/kernel/tracing
mnt debugfs /sys/kernel/debug
mnt bpf /sys/fs/bpf
mkdir -p /tmp /root /dev/shm
mount -t tmpfs tmpfs /dev/shm 2>/dev/null
# overlayfs is a module in Debian's kernels (the agent's containers check).
ko=/lib/modules/$(uname -r)/overlay.ko
if [ -e "$ko" ]; then insmod "$ko" 2>/dev/null || echo "KM_WARN insmod $ko failed"; fi
chmod 1777 /tmp
# Loopback, for the agent's HTTP pages.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null || echo "KM_WARN no loopback"
# Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
ulimit -l unlimited 2>/dev/null || echo "KM_WARN ulimit -l unlimited failed"
ulimit -n 65536 2>/dev/null

sh /km/kernel_matrix_checks.sh /km/config.sh

sync
poweroff -f
echo o >/proc/sysrq-trigger
