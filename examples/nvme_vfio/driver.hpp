// The phyr half of the user-space NVMe driver example: bind the controller through VFIO
// (phyr/os/linux/vfio.hpp), map buffers described as phyr lists of process-virtual ranges with
// `vfio_mapper`, and hand the DMA lists to the controller as PRP or SGL descriptors built by
// phyr/device/nvme. The NVMe registers, queues and commands are in nvme.hpp.
#pragma once

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <phyr/container/range_list.hpp>
#include <phyr/device/nvme/prp.hpp>
#include <phyr/device/nvme/sgl.hpp>
#include <phyr/os/linux/vfio.hpp>
#include <span>

#include "nvme.hpp"

namespace nvme_vfio {

struct nvme_bus {};  // the controller's DMA space: IOVAs of our VFIO container
using mapper_type = phyr::vfio_mapper<nvme_bus>;
using mapping = mapper_type::mapping;
using phyr::dma_direction;

constexpr std::uint64_t page = 4096;

/// A piece of a buffer in this process's memory.
struct vchunk {
  std::uint8_t* p;
  std::size_t len;
};

/// Why the last call failed: phyr's error code, and the errno and call when the OS said no.
struct failure {
  phyr::errc code{};
  int sys_errno = 0;
  const char* op = nullptr;
  std::uint16_t nvme_status = 0;
  void print(const char* what) const {
    if (nvme_status != 0) {
      std::printf("%s: NVMe status 0x%x\n", what, nvme_status);
    } else {
      std::printf("%s: %s%s%s%s%s\n", what, phyr::to_string(code), op ? " in " : "", op ? op : "",
                  sys_errno ? ": " : "", sys_errno ? std::strerror(sys_errno) : "");
    }
  }
};

class session {
 public:
  session() = default;
  session(const session&) = delete;
  session& operator=(const session&) = delete;
  ~session() {
    queues_.reset();  // mappings before their mapper, the mapper before the group
    mapper_.reset();
  }

  /// Binds `bdf` (already owned by vfio-pci), enables the controller, identifies it and creates
  /// one I/O queue pair. False on failure, with the reason in `error()`.
  bool open(const char* bdf) {
    auto group_no = phyr::vfio::try_iommu_group_of(bdf);
    if (!group_no) return fail(group_no.error());
    auto c = phyr::vfio::container::try_open();
    if (!c) return fail(c.error());
    container_.emplace(std::move(*c));
    auto g = container_->try_attach_group(*group_no);
    if (!g) return fail(g.error());
    group_.emplace(std::move(*g));
    auto d = group_->try_open_device(bdf);
    if (!d) return fail(d.error());
    device_.emplace(std::move(*d));
    auto bar = device_->try_map_bar(0);
    if (!bar) return fail(bar.error());
    bar_ = std::move(*bar);
    if (auto r = device_->try_enable_bus_master(); !r) return fail(r.error());
    mapper_.emplace(*container_, phyr::vfio_mapper_limits{.dma_bits = 64});
    if (auto s = mapper_->status(); !s) return fail(s.error());

    // Queues, Identify data and descriptor memory: one virtually contiguous buffer, so one
    // DMA range; the controller reads and writes it. Pages: admin SQ, admin CQ, Identify, I/O
    // SQ, I/O CQ, then PRP lists (prp_pages of them, so lists can chain), then SGL segments.
    void* mem = mmap(nullptr, total_pages * page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED) return fail(phyr::errc::out_of_memory, errno, "mmap");
    const vchunk all{static_cast<std::uint8_t*>(mem), total_pages * page};
    auto q = map({&all, 1}, dma_direction::bidirectional);
    if (!q) return false;
    queues_.emplace(std::move(*q));
    const std::uint64_t iova = queues_->begin()->addr().value();
    for (std::size_t i = 0; i < total_pages; ++i) pages_[i] = dma_page{all.p + i * page, iova + i * page};

    ctrl_ = controller(bar_.data());
    if (int e = ctrl_.enable(pages_[0], pages_[1])) return fail(phyr::errc::io_error, -e, "controller enable");
    if (int s = ctrl_.identify(pages_[2], id_)) return nvme_fail(s);
    if (int s = ctrl_.create_io_queues(pages_[3], pages_[4])) return nvme_fail(s);
    // MDTS counts units of CAP.MPSMIN (4 KiB here, enable() refuses anything else).
    max_transfer_ = phyr::nvme::mdts_bytes(id_.mdts, page);
    return true;
  }

  [[nodiscard]] const identity& id() const { return id_; }
  [[nodiscard]] controller& ctrl() { return ctrl_; }
  [[nodiscard]] mapper_type& mapper() { return *mapper_; }
  [[nodiscard]] phyr::vfio::container& container() { return *container_; }
  [[nodiscard]] const failure& error() const { return err_; }
  /// What the last prp() built: PRP entries, and PRP list pages (chained when more than one).
  [[nodiscard]] std::uint64_t last_prp_entries() const { return last_prp_entries_; }
  [[nodiscard]] std::uint64_t last_prp_list_pages() const { return last_prp_list_pages_; }

  /// The chunks as a phyr list of process-virtual ranges, mapped for the controller with the
  /// permission `dir` gives it (to_device: it may only read them).
  std::optional<mapping> map(std::span<const vchunk> chunks, dma_direction dir) {
    phyr::range_list<phyr::virt_range> list;
    for (const vchunk& c : chunks) {
      auto r = phyr::virt_range_of(c.p, c.len);
      if (!r) return fail_none(r.error());
      if (auto a = list.try_append(*r); !a) return fail_none(a.error());
    }
    auto m = mapper_->try_map(list, dir);
    if (!m) {
      fail(m.error());
      return std::nullopt;
    }
    return std::move(*m);
  }

  /// DPTR as PRP1/PRP2, with a PRP list in this session's descriptor page when needed.
  bool prp(const mapping& m, data_pointer& dp) {
    auto r = phyr::nvme::try_build_prp<nvme_bus>(
        m, phyr::nvme::prp_config{.page_size = page, .max_transfer = max_transfer_},
        std::span<std::uint64_t>(static_cast<std::uint64_t*>(pages_[5].cpu), prp_pages * page / 8),
        phyr::dma_addr<nvme_bus>{pages_[5].iova});
    if (!r) return fail(r.error(), 0, "nvme::try_build_prp");
    last_prp_entries_ = r->entries;
    last_prp_list_pages_ = r->list_pages;
    dp = data_pointer{{r->prp1.value(), r->prp2.value()}, false};
    return true;
  }

  /// DPTR as one SGL descriptor: a data block, or a (last) segment in this session's SGL page.
  bool sgl(const mapping& m, data_pointer& dp) {
    phyr::nvme::sgl_config cfg;
    cfg.dword_granularity = (id_.sgls & 3) == 2;
    cfg.max_transfer = max_transfer_;
    auto r = phyr::nvme::try_build_sgl<nvme_bus>(
        m, cfg, std::span<std::uint64_t>(static_cast<std::uint64_t*>(pages_[5 + prp_pages].cpu), page / 8),
        phyr::dma_addr<nvme_bus>{pages_[5 + prp_pages].iova});
    if (!r) return fail(r.error(), 0, "nvme::try_build_sgl");
    const auto w = r->sgl1.to_words();
    dp = data_pointer{{w[0], w[1]}, true};
    return true;
  }

  /// An NVMe command's status as a result: true for success, else the status in error().
  bool nvme_ok(int status) { return status == 0 || nvme_fail(status); }

  /// Records a failure from outside (e.g. a peer device's setup) for error().
  bool fail(const phyr::sys_error& e) { return fail(e.code, e.sys_errno, e.op); }

  bool shutdown() { return nvme_ok(ctrl_.shutdown()); }

 private:
  bool fail(phyr::errc c, int e = 0, const char* op = nullptr) {
    err_ = failure{c, e, op, 0};
    return false;
  }
  std::nullopt_t fail_none(phyr::errc c) {
    fail(c);
    return std::nullopt;
  }
  bool nvme_fail(int status) {
    if (status < 0) return fail(phyr::errc::io_error, ETIMEDOUT, "NVMe command");
    err_ = failure{phyr::errc::io_error, 0, "NVMe command", static_cast<std::uint16_t>(status)};
    return false;
  }

  // Declared in the order they are needed; destroyed in reverse (the destructor makes the
  // mapping-before-mapper-before-group order explicit too).
  std::optional<phyr::vfio::container> container_;
  std::optional<phyr::vfio::group> group_;
  std::optional<phyr::vfio::device> device_;
  phyr::vfio::mapped_bar bar_;
  std::optional<mapper_type> mapper_;
  std::optional<mapping> queues_;
  controller ctrl_{nullptr};
  identity id_;
  static constexpr std::size_t prp_pages = 4;
  static constexpr std::size_t total_pages = 5 + prp_pages + 1;
  dma_page pages_[total_pages];
  std::uint64_t last_prp_entries_ = 0, last_prp_list_pages_ = 0;
  std::uint64_t max_transfer_ = 0;
  failure err_;
};

}  // namespace nvme_vfio
