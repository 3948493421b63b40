#!/usr/bin/env python3
"""Disk image and initramfs helpers for tests/vm/run.sh.

  disk.py make IMAGE        write the known pattern
  disk.py check IMAGE       the guest's writes are there, everything else is the pattern
  disk.py cpio DIR OUT      pack DIR as a newc initramfs (plus /dev/console), no cpio needed

The pattern and the written regions are also in tests/vm/vm_test.cpp (disk_word, write_word,
the *_lba constants): change both together.
"""
import os
import stat
import struct
import sys

SECTOR = 512
SECTORS = 32768  # 16 MiB
WORDS = SECTOR // 8

# What the guest writes: (first LBA, sector count). PRP write, SGL write.
WRITTEN = [(4096, 64), (6144, 48)]


def disk_word(lba, i):
    # "phyr" in the top bytes, the LBA and the word index below: a misplaced sector is visible.
    return 0x7068797200000000 | (lba << 8) | i


def write_word(lba, i):
    # "WRIT" marker: bytes the guest wrote, distinguishable from the original pattern.
    return 0x5752495400000000 | (lba << 8) | i


def sector(fn, lba):
    return struct.pack('<%dQ' % WORDS, *[fn(lba, i) for i in range(WORDS)])


def make(path):
    with open(path, 'wb') as f:
        for lba in range(SECTORS):
            f.write(sector(disk_word, lba))


def written(lba):
    return any(first <= lba < first + n for first, n in WRITTEN)


def check(path):
    size = os.path.getsize(path)
    if size != SECTORS * SECTOR:
        print('VM-TEST FAIL host: disk image is %d bytes, expected %d' % (size, SECTORS * SECTOR))
        return False
    bad = []
    with open(path, 'rb') as f:
        for lba in range(SECTORS):
            got = f.read(SECTOR)
            want = sector(write_word if written(lba) else disk_word, lba)
            if got != want:
                bad.append(lba)
    if bad:
        print('VM-TEST FAIL host: %d sectors differ from what the guest should have left, '
              'first LBAs %s' % (len(bad), bad[:8]))
        return False
    n = sum(c for _, c in WRITTEN)
    print('vm: host sees the guest\'s %d written sectors at LBAs %s and the pattern elsewhere'
          % (n, ', '.join('%d+%d' % w for w in WRITTEN)))
    return True


def cpio(src, out):
    ino = [1]

    def entry(f, name, mode, data=b'', rdev=(0, 0)):
        namez = name.encode() + b'\0'
        hdr = b'070701' + b''.join(b'%08x' % v for v in (
            ino[0], mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(namez), 0))
        ino[0] += 1
        f.write(hdr + namez)
        f.write(b'\0' * (-(len(hdr) + len(namez)) % 4))
        f.write(data)
        f.write(b'\0' * (-len(data) % 4))

    with open(out, 'wb') as f:
        for dirpath, dirs, files in os.walk(src):
            dirs.sort()
            rel = os.path.relpath(dirpath, src)
            if rel != '.':
                entry(f, rel, stat.S_IFDIR | 0o755)
            for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]):
                p = os.path.join(dirpath, name)
                r = os.path.normpath(os.path.join(rel, name))
                if os.path.islink(p):
                    entry(f, r, stat.S_IFLNK | 0o777, os.readlink(p).encode())
                else:
                    with open(p, 'rb') as g:
                        data = g.read()
                    entry(f, r, stat.S_IFREG | (os.stat(p).st_mode & 0o777), data)
        # The kernel opens /dev/console for init's stdio before anything can mount devtmpfs.
        entry(f, 'dev/console', stat.S_IFCHR | 0o600, rdev=(5, 1))
        entry(f, 'TRAILER!!!', 0)


if __name__ == '__main__':
    cmd = sys.argv[1] if len(sys.argv) > 1 else ''
    if cmd == 'make' and len(sys.argv) == 3:
        make(sys.argv[2])
    elif cmd == 'check' and len(sys.argv) == 3:
        sys.exit(0 if check(sys.argv[2]) else 1)
    elif cmd == 'cpio' and len(sys.argv) == 4:
        cpio(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
