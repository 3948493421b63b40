// Compiled to assembly by check_empty.cmake (ctest codegen.*), never linked: proves that a DMA
// sync on a coherent mapper's mapping is no code at all. The probe returns whether both syncs
// succeeded; an optimising compiler must reduce it to "return true".
#include <phyr/map/identity_mapper.hpp>
#include <phyr/map/mapper.hpp>

namespace {
struct probe_bus {};
}  // namespace

extern "C" bool phyr_codegen_identity_sync(const phyr::identity_mapper<probe_bus>& m,
                                           const phyr::identity_mapping<probe_bus>& mp) {
  return phyr::try_sync_for_device(m, mp).has_value() &&
         phyr::try_sync_for_cpu(m, mp, {.offset = 0x10, .len = 0x20}).has_value();
}

// The control (ctest expects the check to fail on it): a call that cannot be optimised away,
// so a checker that accepted everything would be caught.
extern "C" bool phyr_codegen_opaque() noexcept;
extern "C" bool phyr_codegen_control() { return phyr_codegen_opaque(); }
