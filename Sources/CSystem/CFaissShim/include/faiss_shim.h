#ifndef VTP_FAISS_SHIM_H
#define VTP_FAISS_SHIM_H

/*
 * A minimal C interface over the faiss C++ library, for Swift.
 *
 * Debian's libfaiss.a carries only the C++ API, so this shim is the single place where C++ meets C:
 * every function catches every C++ exception and reports it as a status code plus a message in the
 * caller's `vtp_faiss_error`, so no exception ever unwinds into Swift.
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Outcome of every shim call. */
typedef enum {
    VTP_FAISS_OK = 0,
    /** An argument was rejected before reaching faiss (null pointer, non-positive size, wrong index kind). */
    VTP_FAISS_INVALID_ARGUMENT = 1,
    /** faiss threw a `faiss::FaissException` (bad file, untrained index, too few training points, ...). */
    VTP_FAISS_FAISS_EXCEPTION = 2,
    /** Allocation failed (`std::bad_alloc`). */
    VTP_FAISS_OUT_OF_MEMORY = 3,
    /** Any other `std::exception`. */
    VTP_FAISS_STD_EXCEPTION = 4,
    /** Something that is not a `std::exception` was thrown. */
    VTP_FAISS_UNKNOWN_EXCEPTION = 5
} vtp_faiss_status;

/** Room for the message of a failed call; filled (NUL-terminated, truncated) only when a call fails. */
typedef struct {
    char message[1024];
} vtp_faiss_error;

/** An owned faiss index; free it with `vtp_faiss_index_free`. */
typedef struct vtp_faiss_index vtp_faiss_index;

/** Metric of an index, mirroring `faiss::MetricType` for the two metrics this shim reports. */
typedef enum {
    VTP_FAISS_METRIC_INNER_PRODUCT = 0,
    VTP_FAISS_METRIC_L2 = 1,
    VTP_FAISS_METRIC_OTHER = 2
} vtp_faiss_metric;

/** Exact inner-product index (`IndexFlatIP`). */
int vtp_faiss_new_flat_ip(int64_t dimension, vtp_faiss_index **out, vtp_faiss_error *error);

/**
 * Inverted-file index with product-quantized residuals under inner product
 * (the index `index_factory(d, "IVF{nlist},PQ{m}x{nbits}", METRIC_INNER_PRODUCT)` builds), whose coarse
 * k-means uses spherical centroids because the vectors it clusters are unit-norm.
 * `dimension` must be a multiple of `subquantizers`.
 */
int vtp_faiss_new_ivfpq_ip(int64_t dimension, int64_t nlist, int64_t subquantizers, int64_t bits_per_code,
                           vtp_faiss_index **out, vtp_faiss_error *error);

/**
 * Inverted-file index with 8-bit scalar-quantized residuals under inner product
 * (what `index_factory(d, "IVF{nlist},SQ8", METRIC_INNER_PRODUCT)` builds), with spherical coarse centroids.
 */
int vtp_faiss_new_ivfsq8_ip(int64_t dimension, int64_t nlist, vtp_faiss_index **out, vtp_faiss_error *error);

/** Trains the index on `n` row-major vectors (a no-op for flat indexes). Blocking. */
int vtp_faiss_train(vtp_faiss_index *index, int64_t n, const float *vectors, vtp_faiss_error *error);

/** Appends `n` row-major vectors; their labels continue from the current count. Blocking. */
int vtp_faiss_add(vtp_faiss_index *index, int64_t n, const float *vectors, vtp_faiss_error *error);

/**
 * Searches `n` row-major queries for their `k` best matches. `distances` and `labels` each hold `n * k`
 * entries; missing results have label -1. Blocking.
 */
int vtp_faiss_search(const vtp_faiss_index *index, int64_t n, const float *queries, int64_t k,
                     float *distances, int64_t *labels, vtp_faiss_error *error);

/** Sets how many inverted lists a search visits; fails for indexes that are not IVF. */
int vtp_faiss_set_nprobe(vtp_faiss_index *index, int64_t nprobe, vtp_faiss_error *error);

/** The number of inverted lists a search visits, or 0 for indexes that are not IVF. */
int64_t vtp_faiss_nprobe(const vtp_faiss_index *index);

/** Writes the index in faiss's own format (what `faiss.read_index` loads). Blocking. */
int vtp_faiss_write(const vtp_faiss_index *index, const char *path, vtp_faiss_error *error);

/** Reads an index written by faiss. Blocking. */
int vtp_faiss_read(const char *path, vtp_faiss_index **out, vtp_faiss_error *error);

/**
 * Reads an index written by faiss with `faiss::IO_FLAG_MMAP`: the inverted lists of an IVF index stay in
 * the file and are paged in by the kernel as searches touch them (read-only `OnDiskInvertedLists`), so
 * opening a many-gigabyte index costs only its quantizer. Non-IVF indexes are read into memory. Blocking.
 */
int vtp_faiss_read_mapped(const char *path, vtp_faiss_index **out, vtp_faiss_error *error);

/** Whether the index's inverted lists are memory-mapped from its file (read with `vtp_faiss_read_mapped`). */
int vtp_faiss_lists_are_mapped(const vtp_faiss_index *index);

/** A deep copy (`faiss::clone_index`): a trained, empty index cloned once per part keeps one quantizer for all. */
int vtp_faiss_clone(const vtp_faiss_index *index, vtp_faiss_index **out, vtp_faiss_error *error);

/** Number of inverted lists, or 0 for indexes that are not IVF. */
int64_t vtp_faiss_nlist(const vtp_faiss_index *index);

/** Bytes one stored vector's code takes (`code_size`): d for SQ8, m*nbits/8 for PQ, 4*d for flat. */
int64_t vtp_faiss_code_size(const vtp_faiss_index *index);

/** The inverted list (coarse centroid) of each of `n` row-major vectors, into `lists` (n entries). IVF only. Blocking. */
int vtp_faiss_assign_lists(const vtp_faiss_index *index, int64_t n, const float *vectors, int64_t *lists,
                           vtp_faiss_error *error);

/**
 * Reserves room for `extra[i]` more entries in inverted list `i` (nlist entries; in-memory IVF lists), or for
 * `extra[0]` more vectors of a flat index, so the adds that follow never reallocate: growth by doubling
 * would otherwise hold up to twice the codes for a moment.
 */
int vtp_faiss_reserve(vtp_faiss_index *index, const int64_t *extra, vtp_faiss_error *error);

/** Appends `n` vectors to an IVF index with their lists already computed by `vtp_faiss_assign_lists`. Blocking. */
int vtp_faiss_add_assigned(vtp_faiss_index *index, int64_t n, const float *vectors, const int64_t *lists,
                           vtp_faiss_error *error);

/** Number of vectors stored. */
int64_t vtp_faiss_ntotal(const vtp_faiss_index *index);

/** Vector dimension. */
int64_t vtp_faiss_dimension(const vtp_faiss_index *index);

/** Whether the index may be added to and searched. */
int vtp_faiss_is_trained(const vtp_faiss_index *index);

/** The metric the index ranks by. */
vtp_faiss_metric vtp_faiss_metric_type(const vtp_faiss_index *index);

/** Frees an index from this shim; null is ignored. */
void vtp_faiss_index_free(vtp_faiss_index *index);

/**
 * Exact inner-product k-nearest-neighbour search of `nx` queries among `ny` database rows, straight on
 * the caller's buffers (no index, no copy). Blocking.
 */
int vtp_faiss_knn_inner_product(const float *queries, int64_t nx, const float *database, int64_t ny, int64_t dimension,
                                int64_t k, float *distances, int64_t *labels, vtp_faiss_error *error);

/* Returns the heap's free pages to the system (glibc malloc_trim). A freed index's inverted lists
   are many blocks below malloc's mmap threshold, which otherwise stay resident. */
void vtp_faiss_release_free_memory(void);

#ifdef __cplusplus
}
#endif

#endif
