// The NVMe half of the user-space driver example: controller registers, the admin queue, one
// I/O queue pair, the commands the example needs, polled completions. Everything DMA-related
// (which memory, at which IOVA, described how) comes from outside: phyr maps the buffers through
// VFIO and builds the PRP/SGL descriptors; this file only puts them into commands.
//
// Register offsets, field positions and opcodes are those of the NVMe base specification 2.0
// ("Controller Registers", "Admin Command Set", "NVM Command Set"). Queue memory and Identify
// buffers are one 4 KiB page each, handed in already mapped (cpu pointer + IOVA).
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace nvme_vfio {

// Polling timeouts: the monotonic clock, and milliseconds since a reading of it.
inline timespec now() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t;
}
inline long elapsed_ms(const timespec& s) {
  const timespec t = now();
  return (t.tv_sec - s.tv_sec) * 1000 + (t.tv_nsec - s.tv_nsec) / 1000000;
}

/// One page of memory both the CPU and the controller reach: queue rings, Identify data,
/// descriptor lists.
struct dma_page {
  void* cpu = nullptr;
  std::uint64_t iova = 0;
};

struct sqe {  // submission queue entry, 64 bytes
  std::uint8_t opc;
  std::uint8_t flags;  // bits 7:6 PSDT: 00 PRP, 01 SGL
  std::uint16_t cid;
  std::uint32_t nsid;
  std::uint32_t cdw2, cdw3;
  std::uint64_t mptr;
  std::uint64_t dptr[2];  // PRP1/PRP2, or one 16-byte SGL descriptor
  std::uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};
static_assert(sizeof(sqe) == 64);

struct cqe {  // completion queue entry, 16 bytes
  std::uint32_t dw0, dw1;
  std::uint16_t sqhd, sqid;
  std::uint16_t cid;
  std::uint16_t status;  // bit 0: phase tag; bits 15:1: status field
};
static_assert(sizeof(cqe) == 16);

/// How a command names its data: PRP1/PRP2, or one SGL descriptor in DPTR (PSDT 01).
struct data_pointer {
  std::uint64_t dptr[2] = {0, 0};
  bool sgl = false;
};

enum : std::uint8_t {
  admin_delete_sq = 0x00,
  admin_create_sq = 0x01,
  admin_delete_cq = 0x04,
  admin_create_cq = 0x05,
  admin_identify = 0x06,
  io_flush = 0x00,
  io_write = 0x01,
  io_read = 0x02,
};

class queue {
 public:
  queue() = default;
  queue(std::uint16_t id, std::uint16_t depth, dma_page sq, dma_page cq, volatile std::uint32_t* sq_db,
        volatile std::uint32_t* cq_db)
      : id_(id), depth_(depth), sq_(sq), cq_(cq), sq_db_(sq_db), cq_db_(cq_db) {
    std::memset(sq.cpu, 0, 4096);
    std::memset(cq.cpu, 0, 4096);
  }
  [[nodiscard]] std::uint16_t id() const { return id_; }
  [[nodiscard]] std::uint16_t depth() const { return depth_; }
  [[nodiscard]] const dma_page& sq_page() const { return sq_; }
  [[nodiscard]] const dma_page& cq_page() const { return cq_; }

  /// Submits `c` and polls for its completion; the status field (0 = success), or -1 on timeout.
  int run(sqe c, cqe* out = nullptr, int timeout_ms = 10000) {
    c.cid = next_cid_++;
    static_cast<sqe*>(sq_.cpu)[tail_] = c;
    tail_ = static_cast<std::uint16_t>((tail_ + 1) % depth_);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // the entry before the doorbell
    *sq_db_ = tail_;
    const timespec start = now();
    auto* ring = static_cast<volatile cqe*>(cq_.cpu);
    for (;;) {
      volatile cqe& e = ring[head_];
      if ((e.status & 1u) == phase_) {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        cqe got{e.dw0, e.dw1, e.sqhd, e.sqid, e.cid, e.status};
        head_ = static_cast<std::uint16_t>((head_ + 1) % depth_);
        if (head_ == 0) phase_ ^= 1u;
        *cq_db_ = head_;
        if (out) *out = got;
        if (got.cid != c.cid) {
          std::printf("nvme: completion for cid %u while waiting for %u\n", got.cid, c.cid);
          return -1;
        }
        return got.status >> 1;
      }
      if (elapsed_ms(start) > timeout_ms) return -1;
    }
  }

 private:
  std::uint16_t id_ = 0, depth_ = 0;
  dma_page sq_, cq_;
  volatile std::uint32_t* sq_db_ = nullptr;
  volatile std::uint32_t* cq_db_ = nullptr;
  std::uint16_t tail_ = 0, head_ = 0, next_cid_ = 1;
  std::uint16_t phase_ = 1;
};

/// The parts of Identify Controller / Namespace the example uses.
struct identity {
  char serial[21] = {};
  char model[41] = {};
  std::uint32_t sgls = 0;  // SGL support; bits 1:0 != 0: SGLs supported for I/O commands
  std::uint8_t mdts = 0;   // max transfer: 2^mdts controller pages, 0 = no limit
  std::uint64_t ns_blocks = 0;
  std::uint32_t block_size = 0;
};

class controller {
 public:
  explicit controller(volatile void* bar0) : bar_(static_cast<volatile std::uint8_t*>(bar0)) {}

  [[nodiscard]] std::uint64_t cap() const { return reg64(0x00); }
  [[nodiscard]] std::uint32_t version() const { return reg32(0x08); }

  /// Reset, program the admin queue (one page each for SQ and CQ), enable with 4 KiB pages.
  /// 0 on success, else a negative errno-style value.
  int enable(dma_page asq, dma_page acq) {
    const std::uint64_t c = cap();
    dstrd_ = static_cast<unsigned>((c >> 32) & 0xf);
    timeout_ms_ = static_cast<int>(((c >> 24) & 0xff) * 500);
    const unsigned mqes = static_cast<unsigned>(c & 0xffff) + 1;
    if (((c >> 48) & 0xf) != 0) return -ENOTSUP;  // MPSMIN above 4 KiB
    if (((c >> 37) & 1) == 0) return -ENOTSUP;    // no NVM command set
    if (reg32(0x14) & 1) {
      set32(0x14, 0);
      if (!wait_ready(false)) return -ETIMEDOUT;
    }
    const std::uint16_t depth = static_cast<std::uint16_t>(mqes < 64 ? mqes : 64);
    set32(0x24, (std::uint32_t{depth - 1u} << 16) | (depth - 1u));  // AQA
    set64(0x28, asq.iova);                                          // ASQ
    set64(0x30, acq.iova);                                          // ACQ
    admin_ = queue(0, depth, asq, acq, doorbell(0, false), doorbell(0, true));
    // CC: EN, CSS 0 (NVM), MPS 0 (4 KiB), AMS 0, IOSQES 6 (64 B), IOCQES 4 (16 B).
    set32(0x14, 1u | (6u << 16) | (4u << 20));
    if (!wait_ready(true)) return -ETIMEDOUT;
    io_depth_ = static_cast<std::uint16_t>(mqes < 64 ? mqes : 64);
    return 0;
  }

  /// Identify Controller (CNS 1) and Namespace 1 (CNS 0) into `buf`; 0 or the NVMe status.
  int identify(dma_page buf, identity& id) {
    auto* b = static_cast<const std::uint8_t*>(buf.cpu);
    sqe c{};
    c.opc = admin_identify;
    c.dptr[0] = buf.iova;
    c.cdw10 = 1;
    if (int s = admin_.run(c)) return s;
    copy_trimmed(id.serial, b + 4, 20);
    copy_trimmed(id.model, b + 24, 40);
    id.mdts = b[77];
    std::memcpy(&id.sgls, b + 536, 4);
    c = sqe{};
    c.opc = admin_identify;
    c.nsid = 1;
    c.dptr[0] = buf.iova;
    c.cdw10 = 0;
    if (int s = admin_.run(c)) return s;
    std::memcpy(&id.ns_blocks, b + 0, 8);
    const unsigned fmt = b[26] & 0xf;
    std::uint32_t lbaf = 0;
    std::memcpy(&lbaf, b + 128 + 4 * fmt, 4);
    id.block_size = 1u << ((lbaf >> 16) & 0xff);
    return 0;
  }

  /// Creates I/O completion queue 1 then submission queue 1 (physically contiguous, one page
  /// each, interrupts off: completions are polled).
  int create_io_queues(dma_page sq, dma_page cq) {
    const std::uint16_t depth = io_depth_;
    sqe c{};
    c.opc = admin_create_cq;
    c.dptr[0] = cq.iova;
    c.cdw10 = (std::uint32_t{depth - 1u} << 16) | 1u;
    c.cdw11 = 1u;  // PC, IEN off
    if (int s = admin_.run(c)) return s;
    c = sqe{};
    c.opc = admin_create_sq;
    c.dptr[0] = sq.iova;
    c.cdw10 = (std::uint32_t{depth - 1u} << 16) | 1u;
    c.cdw11 = (1u << 16) | 1u;  // CQID 1, PC
    if (int s = admin_.run(c)) return s;
    io_ = queue(1, depth, sq, cq, doorbell(1, false), doorbell(1, true));
    return 0;
  }

  /// READ or WRITE of `blocks` logical blocks at `lba` of namespace 1; 0 or the NVMe status.
  int rw(std::uint8_t opc, std::uint64_t lba, std::uint32_t blocks, const data_pointer& dp) {
    sqe c{};
    c.opc = opc;
    c.flags = dp.sgl ? 0x40 : 0x00;
    c.nsid = 1;
    c.dptr[0] = dp.dptr[0];
    c.dptr[1] = dp.dptr[1];
    c.cdw10 = static_cast<std::uint32_t>(lba);
    c.cdw11 = static_cast<std::uint32_t>(lba >> 32);
    c.cdw12 = blocks - 1;
    return io_.run(c);
  }

  int flush() {
    sqe c{};
    c.opc = io_flush;
    c.nsid = 1;
    return io_.run(c);
  }

  /// Deletes the I/O queues and asks for a normal shutdown (CC.SHN 01, CSTS.SHST 10).
  int shutdown() {
    sqe c{};
    c.opc = admin_delete_sq;
    c.cdw10 = 1;
    if (int s = admin_.run(c)) return s;
    c = sqe{};
    c.opc = admin_delete_cq;
    c.cdw10 = 1;
    if (int s = admin_.run(c)) return s;
    set32(0x14, (reg32(0x14) & ~(3u << 14)) | (1u << 14));
    const timespec start = now();
    while (((reg32(0x1c) >> 2) & 3) != 2) {
      if (elapsed_ms(start) > timeout_ms_) return -ETIMEDOUT;
    }
    return 0;
  }

 private:
  [[nodiscard]] std::uint32_t reg32(unsigned off) const {
    return *reinterpret_cast<volatile const std::uint32_t*>(bar_ + off);
  }
  [[nodiscard]] std::uint64_t reg64(unsigned off) const {
    return reg32(off) | (std::uint64_t{reg32(off + 4)} << 32);
  }
  void set32(unsigned off, std::uint32_t v) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    *reinterpret_cast<volatile std::uint32_t*>(bar_ + off) = v;
  }
  void set64(unsigned off, std::uint64_t v) {
    set32(off, static_cast<std::uint32_t>(v));
    set32(off + 4, static_cast<std::uint32_t>(v >> 32));
  }
  volatile std::uint32_t* doorbell(unsigned qid, bool cq) {
    const unsigned off = 0x1000 + (2 * qid + (cq ? 1 : 0)) * (4u << dstrd_);
    return reinterpret_cast<volatile std::uint32_t*>(bar_ + off);
  }
  bool wait_ready(bool ready) {
    const timespec start = now();
    while (((reg32(0x1c) & 1) != 0) != ready) {
      if (reg32(0x1c) & 2) return false;  // CSTS.CFS
      if (elapsed_ms(start) > timeout_ms_) return false;
    }
    return true;
  }
  static void copy_trimmed(char* out, const std::uint8_t* in, std::size_t n) {
    std::memcpy(out, in, n);
    out[n] = 0;
    while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == 0)) out[--n] = 0;
  }

  volatile std::uint8_t* bar_;
  unsigned dstrd_ = 0;
  int timeout_ms_ = 500;
  std::uint16_t io_depth_ = 0;
  queue admin_, io_;
};

}  // namespace nvme_vfio
