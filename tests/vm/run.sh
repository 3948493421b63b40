#!/usr/bin/env bash
# End-to-end test of phyr driving a real (emulated) NVMe controller through VFIO, in a QEMU VM.
#
#   tests/vm/run.sh --guest BIN --example BIN [--work DIR]
#
# --guest is the static test program (tests/vm/vm_test.cpp), --example the static driver example
# (examples/nvme_vfio), both built by the vm preset (tests/vm/CMakeLists.txt). The script
#  1. installs QEMU from Debian's packages if it is missing (apt-get; root or sudo);
#  2. fetches Debian's linux-image-6.1.0-*-amd64 and busybox-static with `apt-get download` and
#     keeps only what the guest needs (kernel, six vfio modules, busybox) in a cache directory that
#     survives between runs: PHYR_VM_CACHE, default /var/cache/phyr-vm;
#  3. packs an initramfs (busybox, the modules, the test program, tests/vm/init), writes a disk
#     image holding a known pattern (tests/vm/disk.py), boots QEMU (TCG, q35, emulated Intel IOMMU,
#     emulated NVMe) with a hard timeout, and tees the serial console to DIR/console.log;
#  4. passes only if every expected `VM-TEST PASS` line appeared, the guest's summary says no
#     failure, and the disk image afterwards holds exactly the bytes the guest wrote.
#
# Knobs (environment):
#   PHYR_VM_CACHE        cache directory (kernel, busybox, downloaded .debs)
#   PHYR_VM_KERNEL_ABI   pin a kernel ABI, e.g. 6.1.0-57; default: the newest one already in the
#                        cache, else the newest the package lists offer
#   PHYR_VM_REFRESH=1    ignore cached kernels and pick the newest offered again
#   PHYR_VM_TIMEOUT      seconds before QEMU is killed (default 240)
#   PHYR_VM_PVH=0        boot the compressed bzImage instead of the extracted ELF vmlinux (PVH)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
guest=""
example=""
work=""
while [ $# -gt 0 ]; do
  case $1 in
    --guest) guest=$2; shift 2 ;;
    --example) example=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
for b in "$guest" "$example"; do
  [ -n "$b" ] && [ -x "$b" ] || { echo "run.sh: --guest BIN and --example BIN are required" >&2; exit 2; }
  if [ "$(od -An -tx1 -N4 "$b" | tr -d ' ')" != 7f454c46 ]; then
    echo "run.sh: $b is not an ELF executable" >&2; exit 2
  fi
done
work=${work:-$(mktemp -d)}
mkdir -p "$work"
cache=${PHYR_VM_CACHE:-/var/cache/phyr-vm}
timeout_s=${PHYR_VM_TIMEOUT:-240}
mkdir -p "$cache"

log() { echo "vm: $*"; }
t0=$SECONDS

sudo=()
[ "$(id -u)" -ne 0 ] && sudo=(sudo)
apt_updated=0
apt_update() {
  if [ $apt_updated -eq 0 ]; then
    log "apt-get update"
    "${sudo[@]}" apt-get update -qq
    apt_updated=1
  fi
}

# ---- 1. host packages ----------------------------------------------------------------------------
# Installed .debs are kept in the cache too (Debian's container images delete apt's own copies).
host_packages=(qemu-system-x86 python3)
missing=()
for p in "${host_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt_update
  log "installing ${missing[*]}"
  mkdir -p "$cache/apt/partial"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dir::Cache::archives="$cache/apt" "${missing[@]}" >/dev/null
fi

# ---- 2. kernel and busybox from Debian's packages ------------------------------------------------
# `apt-get download` + `dpkg-deb -x`: nothing is installed on the host. The kernel package has the
# modules but no modules.dep, so the guest loads the six vfio modules by path, in order (init).
vfio_modules=(
  virt/lib/irqbypass.ko
  drivers/vfio/vfio.ko
  drivers/vfio/vfio_iommu_type1.ko
  drivers/vfio/vfio_virqfd.ko
  drivers/vfio/pci/vfio-pci-core.ko
  drivers/vfio/pci/vfio-pci.ko
)

fetch_deb() { # fetch_deb PACKAGE DIR: download PACKAGE's .deb into DIR, return 0 on success
  (cd "$2" && apt-get download -qq "$1" >/dev/null 2>&1)
}

extract_vmlinux() { # extract_vmlinux BZIMAGE OUT: the ELF inside a bzImage (scripts/extract-vmlinux)
  python3 - "$1" "$2" <<'PY'
import lzma, sys, zlib
data = open(sys.argv[1], 'rb').read()
def try_zstd(blob):
    import subprocess
    try:
        return subprocess.run(['zstd', '-dc'], input=blob, capture_output=True).stdout
    except FileNotFoundError:
        return b''
tries = [(b'\xfd7zXZ\x00', lambda b: lzma.LZMADecompressor().decompress(b)),
         (b'\x1f\x8b\x08', lambda b: zlib.decompressobj(31).decompress(b)),
         (b'\x28\xb5\x2f\xfd', try_zstd)]
for magic, dec in tries:
    at = data.find(magic)
    while at >= 0:
        try:
            out = dec(data[at:])
        except Exception:
            out = b''
        if out[:4] == b'\x7fELF':
            open(sys.argv[2], 'wb').write(out)
            sys.exit(0)
        at = data.find(magic, at + 1)
sys.exit(1)
PY
}

newest_cached_abi() {
  ls -1 "$cache" 2>/dev/null | sed -n 's/^kernel-\(.*\)$/\1/p' | while read -r a; do
    [ -f "$cache/kernel-$a/ok" ] && echo "$a"
  done | sort -V | tail -n 1
}

abi=${PHYR_VM_KERNEL_ABI:-}
if [ -z "$abi" ] && [ "${PHYR_VM_REFRESH:-0}" != 1 ]; then
  abi=$(newest_cached_abi)
fi
if [ -z "$abi" ] || [ ! -f "$cache/kernel-$abi/ok" ]; then
  if [ -n "$abi" ]; then
    candidates=("$abi")
  else
    list_abis() {
      apt-cache search --names-only '^linux-image-6\.[0-9]+\.[0-9]+-[0-9]+-amd64$' 2>/dev/null |
        sed -n 's/^linux-image-\([0-9.]*-[0-9]*\)-amd64 .*/\1/p' | sort -V -r
    }
    mapfile -t candidates < <(list_abis)
    if [ ${#candidates[@]} -eq 0 ]; then
      apt_update
      mapfile -t candidates < <(list_abis)
    fi
    [ ${#candidates[@]} -gt 0 ] || { log "no linux-image-*-amd64 package offered"; exit 1; }
  fi
  dl=$(mktemp -d "$cache/dl.XXXXXX")
  got=""
  for a in "${candidates[@]}"; do
    log "downloading linux-image-$a-amd64"
    if fetch_deb "linux-image-$a-amd64" "$dl" || { apt_update && fetch_deb "linux-image-$a-amd64" "$dl"; }; then
      got=$a
      break
    fi
    log "linux-image-$a-amd64 is not downloadable, trying an older one"
  done
  [ -n "$got" ] || { rm -rf "$dl"; log "could not download a kernel"; exit 1; }
  abi=$got
  kdir="$cache/kernel-$abi"
  rm -rf "$kdir"
  mkdir -p "$kdir/modules" "$dl/x"
  dpkg-deb -x "$dl"/linux-image-"$abi"-amd64_*.deb "$dl/x"
  cp "$dl/x/boot/vmlinuz-$abi-amd64" "$kdir/bzImage"
  for m in "${vfio_modules[@]}"; do
    src="$dl/x/lib/modules/$abi-amd64/kernel/$m"
    if [ -f "$src" ]; then
      cp "$src" "$kdir/modules/"
    elif [ -f "$src.xz" ]; then
      xz -dc "$src.xz" >"$kdir/modules/$(basename "$m")"
    else
      log "kernel $abi has no $m"; rm -rf "$dl"; exit 1
    fi
  done
  if extract_vmlinux "$kdir/bzImage" "$kdir/vmlinux"; then
    log "extracted the ELF vmlinux for PVH boot"
  else
    rm -f "$kdir/vmlinux"
  fi
  rm -rf "$dl"
  touch "$kdir/ok"
  if [ -z "${PHYR_VM_KERNEL_ABI:-}" ]; then
    # The newest replaces older ones: the cache does not grow with every security update.
    for old in "$cache"/kernel-*; do
      [ "$old" = "$kdir" ] || rm -rf "$old"
    done
  fi
fi
kdir="$cache/kernel-$abi"
log "kernel $abi"

bb="$cache/busybox/busybox"
if [ ! -x "$bb" ]; then
  dl=$(mktemp -d "$cache/dl.XXXXXX")
  log "downloading busybox-static"
  fetch_deb busybox-static "$dl" || { apt_update && fetch_deb busybox-static "$dl"; } ||
    { rm -rf "$dl"; log "could not download busybox-static"; exit 1; }
  mkdir -p "$dl/x" "$cache/busybox"
  dpkg-deb -x "$dl"/busybox-static_*.deb "$dl/x"
  cp "$dl/x/bin/busybox" "$bb.tmp" && mv "$bb.tmp" "$bb"
  rm -rf "$dl"
fi
log "host ready after $((SECONDS - t0))s"

# ---- 3. initramfs, disk image, boot --------------------------------------------------------------
root="$work/initramfs"
rm -rf "$root"
mkdir -p "$root"/{bin,dev,proc,sys,lib/modules}
cp "$bb" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$kdir"/modules/*.ko "$root/lib/modules/"
cp "$here/init" "$root/init"
chmod +x "$root/init"
cp "$guest" "$root/bin/vm_test"
cp "$example" "$root/bin/nvme_vfio"
# newc archive, written by python so the host needs no cpio package.
python3 "$here/disk.py" cpio "$root" "$work/initramfs.cpio"

disk="$work/disk.img"
python3 "$here/disk.py" make "$disk"

kernel="$kdir/bzImage"
if [ "${PHYR_VM_PVH:-1}" != 0 ] && [ -f "$kdir/vmlinux" ]; then
  kernel="$kdir/vmlinux"
fi
console="$work/console.log"
log "booting ($(basename "$kernel"), timeout ${timeout_s}s)"
boot0=$SECONDS
qemu_rc=0
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 \
  -accel tcg -cpu max -smp 1 -m 1G \
  -machine q35,kernel-irqchip=split \
  -device intel-iommu,intremap=on,caching-mode=on \
  -drive file="$disk",if=none,id=d0,format=raw \
  -device nvme,serial=phyr-vm-0001,drive=d0,mdts=10 \
  -device nvme,serial=phyr-vm-cmb,cmb_size_mb=1 \
  -kernel "$kernel" -initrd "$work/initramfs.cpio" \
  -append "console=ttyS0 intel_iommu=on panic=-1 quiet no_timer_check" \
  -nographic -no-reboot -nic none </dev/null 2>&1 | tee "$console" || qemu_rc=$?
log "guest ran $((SECONDS - boot0))s (qemu exit $qemu_rc)"

# ---- 4. verdict ------------------------------------------------------------------------------------
failed=0
expect() { # expect REGEX DESCRIPTION: a line of the console must match REGEX
  if grep -qaE "$1" "$console"; then
    :
  else
    echo "VM-TEST MISSING: $2"
    failed=$((failed + 1))
  fi
}
while IFS= read -r line; do
  [ -z "$line" ] || [ "${line:0:1}" = "#" ] && continue
  expect "^VM-TEST PASS ${line}" "VM-TEST PASS ${line}"
done <"$here/expected.txt"
expect '^VM-TEST SUMMARY [0-9]+ passed, 0 failed' "the guest's summary with no failure"
if grep -qaE '^VM-TEST FAIL' "$console"; then
  grep -aE '^VM-TEST FAIL' "$console"
  failed=$((failed + 1))
fi
if python3 "$here/disk.py" check "$disk"; then
  echo "VM-TEST PASS host: disk image holds the guest's writes, the rest of the pattern intact"
else
  failed=$((failed + 1))
fi
if [ "$qemu_rc" -ne 0 ]; then
  echo "VM-TEST FAIL qemu exited with $qemu_rc (124: timeout after ${timeout_s}s)"
  failed=$((failed + 1))
fi
echo "vm: total $((SECONDS - t0))s"
if [ $failed -ne 0 ]; then
  echo "vm-test: FAILED ($failed problems)"
  exit 1
fi
echo "vm-test: all checks passed"
