/// NVMe data pointers from DMA lists: PRP and SGL builders, and a controller-side walker.
///
///   #include <phyr/device/nvme.hpp>
///   auto prp = phyr::nvme::try_build_prp(mapping, 4096, pool_words, pool_dma);
///   auto sgl = phyr::nvme::try_build_sgl(mapping, phyr::nvme::sgl_config{}, pool_words, pool_dma);
///
/// See device/nvme/prp.hpp and device/nvme/sgl.hpp for the rules; device/nvme/walk.hpp reads
/// the result back as the specification says a controller does.
#pragma once

#include <phyr/device/nvme/common.hpp>
#include <phyr/device/nvme/prp.hpp>
#include <phyr/device/nvme/sgl.hpp>
#include <phyr/device/nvme/walk.hpp>
