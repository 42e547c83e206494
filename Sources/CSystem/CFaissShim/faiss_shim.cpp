// The only translation unit that touches faiss's C++ API. Every entry point funnels its body through
// `guarded`, which turns each C++ exception into a status code and message so none crosses into Swift.

#include "faiss_shim.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/FaissException.h>
#include <faiss/clone_index.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/invlists/OnDiskInvertedLists.h>
#include <faiss/utils/distances.h>

#include <cstdio>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>

struct vtp_faiss_index {
    std::unique_ptr<faiss::Index> index;
};

namespace {

void set_message(vtp_faiss_error *error, const char *message) {
    if (error == nullptr) return;
    std::snprintf(error->message, sizeof(error->message), "%s", message);
}

int fail(vtp_faiss_error *error, int status, const char *message) {
    set_message(error, message);
    return status;
}

// Runs `body` (which returns a status) and maps every exception to a status and message.
template <typename Body>
int guarded(vtp_faiss_error *error, Body &&body) noexcept {
    try {
        return body();
    } catch (const faiss::FaissException &e) {
        return fail(error, VTP_FAISS_FAISS_EXCEPTION, e.what());
    } catch (const std::bad_alloc &e) {
        return fail(error, VTP_FAISS_OUT_OF_MEMORY, e.what());
    } catch (const std::exception &e) {
        return fail(error, VTP_FAISS_STD_EXCEPTION, e.what());
    } catch (...) {
        return fail(error, VTP_FAISS_UNKNOWN_EXCEPTION, "unknown C++ exception");
    }
}

// faiss aborts (rather than throws) on some argument errors, so those are rejected here first.
bool positive(int64_t value) { return value > 0; }

}  // namespace

// An inner-product IVF index over a flat coarse quantizer it owns, wrapped for the C interface.
// `make_ivf` builds the IVF variant (PQ, SQ8) around the quantizer.
template <typename MakeIVF>
static vtp_faiss_index *new_inner_product_ivf(int64_t dimension, MakeIVF make_ivf) {
    auto quantizer = std::make_unique<faiss::IndexFlatIP>(dimension);
    std::unique_ptr<faiss::IndexIVF> ivf = make_ivf(quantizer.get());
    quantizer.release();
    ivf->own_fields = true;
    // Unit-norm data: keep centroids on the sphere so inner-product assignment stays balanced.
    ivf->cp.spherical = true;
    auto wrapper = std::make_unique<vtp_faiss_index>();
    wrapper->index = std::move(ivf);
    return wrapper.release();
}

extern "C" {

int vtp_faiss_new_flat_ip(int64_t dimension, vtp_faiss_index **out, vtp_faiss_error *error) {
    if (out == nullptr || !positive(dimension)) return fail(error, VTP_FAISS_INVALID_ARGUMENT, "dimension must be positive");
    *out = nullptr;
    return guarded(error, [&] {
        auto wrapper = std::make_unique<vtp_faiss_index>();
        wrapper->index = std::make_unique<faiss::IndexFlatIP>(dimension);
        *out = wrapper.release();
        return int(VTP_FAISS_OK);
    });
}

int vtp_faiss_new_ivfpq_ip(int64_t dimension, int64_t nlist, int64_t subquantizers, int64_t bits_per_code,
                           vtp_faiss_index **out, vtp_faiss_error *error) {
    if (out == nullptr || !positive(dimension) || !positive(nlist) || !positive(subquantizers) ||
        bits_per_code < 1 || bits_per_code > 16) {
        return fail(error, VTP_FAISS_INVALID_ARGUMENT, "dimension, nlist and subquantizers must be positive, bits 1...16");
    }
    if (dimension % subquantizers != 0) {
        return fail(error, VTP_FAISS_INVALID_ARGUMENT, "dimension is not a multiple of the number of subquantizers");
    }
    *out = nullptr;
    return guarded(error, [&] {
        *out = new_inner_product_ivf(dimension, [&](faiss::IndexFlatIP *quantizer) {
            return std::make_unique<faiss::IndexIVFPQ>(quantizer, dimension, nlist, subquantizers, bits_per_code,
                                                       faiss::METRIC_INNER_PRODUCT);
        });
        return int(VTP_FAISS_OK);
    });
}

int vtp_faiss_new_ivfsq8_ip(int64_t dimension, int64_t nlist, vtp_faiss_index **out, vtp_faiss_error *error) {
    if (out == nullptr || !positive(dimension) || !positive(nlist)) {
        return fail(error, VTP_FAISS_INVALID_ARGUMENT, "dimension and nlist must be positive");
    }
    *out = nullptr;
    return guarded(error, [&] {
        *out = new_inner_product_ivf(dimension, [&](faiss::IndexFlatIP *quantizer) {
            return std::make_unique<faiss::IndexIVFScalarQuantizer>(quantizer, dimension, nlist,
                                                                    faiss::ScalarQuantizer::QT_8bit,
                                                                    faiss::METRIC_INNER_PRODUCT);
        });
        return int(VTP_FAISS_OK);
    });
}

int vtp_faiss_train(vtp_faiss_index *index, int64_t n, const float *vectors, vtp_faiss_error *error) {
    if (index == nullptr || vectors == nullptr || !positive(n)) {
        return fail(error, VTP_FAISS_INVALID_ARGUMENT, "training needs an index and at least one vector");
    }
    return guarded(error, [&] {
        index->index->train(n, vectors);
        return int(VTP_FAISS_OK);
    });
}

int vtp_faiss_add(vtp_faiss_index *index, int64_t n, const float *vectors, vtp_faiss_error *error) {
    if (index == nullptr || n < 0 || (n > 0 && vectors == nullptr)) {
        return fail(error, VTP_FAISS_INVALID_ARGUMENT, "add needs an index and a vector buffer");
    }
    return guarded(error, [&] {
        index->index->add(n, vectors);
        return int(VTP_FAISS_OK);
    });
}

int vtp_faiss_search(const vtp_faiss_index *index, int64_t n, const float *queries, int64_t k, float *distances,
                     int64_t *labels, vtp_faiss_error *error) {
    if (index == nullptr || n < 0 || !positive(k) || (n > 0 && (queries == nullptr || distances == nullptr || labels == nullptr))) {
        return fail(error, VTP_FAISS_INVALID_ARGUMENT, "search needs an index, buffers and k > 0");
    }
    return guarded(error, [&] {
        index->index->search(n, queries, k, distances, labels);
        return int(VTP_FAISS_OK);
    });
}

int vtp_faiss_set_nprobe(vtp_faiss_index *index, int64_t nprobe, vtp_faiss_error *error) {
    if (index == nullptr || !positive(nprobe)) return fail(error, VTP_FAISS_INVALID_ARGUMENT, "nprobe must be positive");
    return guarded(error, [&] {
        auto *ivf = dynamic_cast<faiss::IndexIVF *>(index->index.get());
        if (ivf == nullptr) return fail(error, VTP_FAISS_INVALID_ARGUMENT, "nprobe applies only to IVF indexes");
        ivf->nprobe = size_t(nprobe) < ivf->nlist ? size_t(nprobe) : ivf->nlist;
        return int(VTP_FAISS_OK);
    });
}

int64_t vtp_faiss_nprobe(const vtp_faiss_index *index) {
    if (index == nullptr) return 0;
    auto *ivf = dynamic_cast<const faiss::IndexIVF *>(index->index.get());
    return ivf == nullptr ? 0 : int64_t(ivf->nprobe);
}

int vtp_faiss_write(const vtp_faiss_index *index, const char *path, vtp_faiss_error *error) {
    if (index == nullptr || path == nullptr) return fail(error, VTP_FAISS_INVALID_ARGUMENT, "write needs an index and a path");
    return guarded(error, [&] {
        faiss::write_index(index->index.get(), path);
        return int(VTP_FAISS_OK);
    });
}

static int read_with_flags(const char *path, int flags, vtp_faiss_index **out, vtp_faiss_error *error) {
    if (path == nullptr || out == nullptr) return fail(error, VTP_FAISS_INVALID_ARGUMENT, "read needs a path");
    *out = nullptr;
    return guarded(error, [&] {
        std::unique_ptr<faiss::Index> loaded(faiss::read_index(path, flags));
        auto wrapper = std::make_unique<vtp_faiss_index>();
        wrapper->index = std::move(loaded);
        *out = wrapper.release();
        return int(VTP_FAISS_OK);
    });
}

int vtp_faiss_read(const char *path, vtp_faiss_index **out, vtp_faiss_error *error) {
    return read_with_flags(path, 0, out, error);
}

int vtp_faiss_read_mapped(const char *path, vtp_faiss_index **out, vtp_faiss_error *error) {
    return read_with_flags(path, faiss::IO_FLAG_MMAP, out, error);
}

int vtp_faiss_lists_are_mapped(const vtp_faiss_index *index) {
    if (index == nullptr) return 0;
    auto *ivf = dynamic_cast<const faiss::IndexIVF *>(index->index.get());
    return ivf != nullptr && dynamic_cast<const faiss::OnDiskInvertedLists *>(ivf->invlists) != nullptr ? 1 : 0;
}

int vtp_faiss_clone(const vtp_faiss_index *index, vtp_faiss_index **out, vtp_faiss_error *error) {
    if (index == nullptr || out == nullptr) return fail(error, VTP_FAISS_INVALID_ARGUMENT, "clone needs an index");
    *out = nullptr;
    return guarded(error, [&] {
        std::unique_ptr<faiss::Index> copy(faiss::clone_index(index->index.get()));
        auto wrapper = std::make_unique<vtp_faiss_index>();
        wrapper->index = std::move(copy);
        *out = wrapper.release();
        return int(VTP_FAISS_OK);
    });
}

int64_t vtp_faiss_nlist(const vtp_faiss_index *index) {
    if (index == nullptr) return 0;
    auto *ivf = dynamic_cast<const faiss::IndexIVF *>(index->index.get());
    return ivf == nullptr ? 0 : int64_t(ivf->nlist);
}

int64_t vtp_faiss_code_size(const vtp_faiss_index *index) {
    if (index == nullptr) return 0;
    if (auto *ivf = dynamic_cast<const faiss::IndexIVF *>(index->index.get())) return int64_t(ivf->code_size);
    if (auto *flat = dynamic_cast<const faiss::IndexFlatCodes *>(index->index.get())) return int64_t(flat->code_size);
    return 0;
}

int vtp_faiss_assign_lists(const vtp_faiss_index *index, int64_t n, const float *vectors, int64_t *lists,
                           vtp_faiss_error *error) {
    if (index == nullptr || n < 0 || (n > 0 && (vectors == nullptr || lists == nullptr))) {
        return fail(error, VTP_FAISS_INVALID_ARGUMENT, "assign needs an index and buffers");
    }
    return guarded(error, [&] {
        auto *ivf = dynamic_cast<const faiss::IndexIVF *>(index->index.get());
        if (ivf == nullptr) return fail(error, VTP_FAISS_INVALID_ARGUMENT, "list assignment applies only to IVF indexes");
        if (!ivf->is_trained) return fail(error, VTP_FAISS_INVALID_ARGUMENT, "the index is not trained");
        if (n > 0) ivf->quantizer->assign(n, vectors, lists);
        return int(VTP_FAISS_OK);
    });
}

int vtp_faiss_reserve(vtp_faiss_index *index, const int64_t *extra, vtp_faiss_error *error) {
    if (index == nullptr || extra == nullptr) return fail(error, VTP_FAISS_INVALID_ARGUMENT, "reserve needs an index and sizes");
    return guarded(error, [&] {
        if (auto *ivf = dynamic_cast<faiss::IndexIVF *>(index->index.get())) {
            auto *lists = dynamic_cast<faiss::ArrayInvertedLists *>(ivf->invlists);
            if (lists == nullptr) return fail(error, VTP_FAISS_INVALID_ARGUMENT, "reserve needs in-memory inverted lists");
            for (size_t i = 0; i < ivf->nlist; i++) {
                if (extra[i] < 0) return fail(error, VTP_FAISS_INVALID_ARGUMENT, "negative list size");
                size_t entries = lists->ids[i].size() + size_t(extra[i]);
                lists->ids[i].reserve(entries);
                lists->codes[i].reserve(entries * lists->code_size);
            }
            return int(VTP_FAISS_OK);
        }
        if (auto *flat = dynamic_cast<faiss::IndexFlatCodes *>(index->index.get())) {
            if (extra[0] < 0) return fail(error, VTP_FAISS_INVALID_ARGUMENT, "negative size");
            flat->codes.reserve(flat->codes.size() + size_t(extra[0]) * flat->code_size);
            return int(VTP_FAISS_OK);
        }
        return fail(error, VTP_FAISS_INVALID_ARGUMENT, "reserve applies to IVF and flat indexes");
    });
}

int vtp_faiss_add_assigned(vtp_faiss_index *index, int64_t n, const float *vectors, const int64_t *lists,
                           vtp_faiss_error *error) {
    if (index == nullptr || n < 0 || (n > 0 && (vectors == nullptr || lists == nullptr))) {
        return fail(error, VTP_FAISS_INVALID_ARGUMENT, "add needs an index and buffers");
    }
    return guarded(error, [&] {
        auto *ivf = dynamic_cast<faiss::IndexIVF *>(index->index.get());
        if (ivf == nullptr) return fail(error, VTP_FAISS_INVALID_ARGUMENT, "pre-assigned adds apply only to IVF indexes");
        if (!ivf->is_trained) return fail(error, VTP_FAISS_INVALID_ARGUMENT, "the index is not trained");
        for (int64_t i = 0; i < n; i++) {
            if (lists[i] < 0 || lists[i] >= int64_t(ivf->nlist)) return fail(error, VTP_FAISS_INVALID_ARGUMENT, "list number out of range");
        }
        if (n > 0) ivf->add_core(n, vectors, nullptr, lists);
        return int(VTP_FAISS_OK);
    });
}

int64_t vtp_faiss_ntotal(const vtp_faiss_index *index) { return index == nullptr ? 0 : int64_t(index->index->ntotal); }

int64_t vtp_faiss_dimension(const vtp_faiss_index *index) { return index == nullptr ? 0 : int64_t(index->index->d); }

int vtp_faiss_is_trained(const vtp_faiss_index *index) { return index != nullptr && index->index->is_trained ? 1 : 0; }

vtp_faiss_metric vtp_faiss_metric_type(const vtp_faiss_index *index) {
    if (index == nullptr) return VTP_FAISS_METRIC_OTHER;
    switch (index->index->metric_type) {
        case faiss::METRIC_INNER_PRODUCT: return VTP_FAISS_METRIC_INNER_PRODUCT;
        case faiss::METRIC_L2: return VTP_FAISS_METRIC_L2;
        default: return VTP_FAISS_METRIC_OTHER;
    }
}

void vtp_faiss_index_free(vtp_faiss_index *index) { delete index; }

int vtp_faiss_knn_inner_product(const float *queries, int64_t nx, const float *database, int64_t ny, int64_t dimension,
                                int64_t k, float *distances, int64_t *labels, vtp_faiss_error *error) {
    if (queries == nullptr || database == nullptr || distances == nullptr || labels == nullptr || !positive(nx) ||
        !positive(ny) || !positive(dimension) || !positive(k)) {
        return fail(error, VTP_FAISS_INVALID_ARGUMENT, "exact search needs buffers and positive sizes");
    }
    return guarded(error, [&] {
        faiss::knn_inner_product(queries, database, size_t(dimension), size_t(nx), size_t(ny), size_t(k), distances, labels);
        return int(VTP_FAISS_OK);
    });
}

void vtp_faiss_release_free_memory(void) {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

}  // extern "C"
