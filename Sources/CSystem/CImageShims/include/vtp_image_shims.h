#pragma once
// Thin wrappers around libjpeg and libpng. Both libraries report fatal errors by
// longjmp-ing out of a callback, which Swift cannot catch, so every entry point here
// owns its own setjmp and turns a library error into a status code plus a message.
// Pixel conversion policy (what a PIL-faithful RGB image looks like) stays in Swift;
// these functions only move bytes in and out of the codecs.

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Result codes shared by every shim function.
typedef enum {
    VTP_IMG_OK = 0,
    /// The codec rejected the data (bad marker, CRC, zlib stream, ...).
    VTP_IMG_CORRUPT = 1,
    /// The data ended before the image was complete.
    VTP_IMG_TRUNCATED = 2,
    /// Valid data the shim does not decode (e.g. 12-bit JPEG).
    VTP_IMG_UNSUPPORTED = 3,
    /// An allocation failed or a caller buffer had the wrong size.
    VTP_IMG_RESOURCE = 4,
} vtp_img_status;

/// Size of the message buffers callers pass in.
#define VTP_IMG_MESSAGE_CAPACITY 256

// MARK: JPEG decoding

typedef struct vtp_jpeg_decoder vtp_jpeg_decoder;

typedef struct {
    uint32_t width;
    uint32_t height;
    /// Components in the file: 1 (gray), 3 (YCbCr/RGB) or 4 (CMYK/YCCK).
    int32_t components;
    /// Bytes per pixel `vtp_jpeg_decode` writes: 3 (RGB) or 4 (CMYK as libjpeg returns it).
    int32_t output_channels;
    /// Bytes of the whole-image coefficient buffer libjpeg allocates for progressive and
    /// multi-scan files (0 for single-scan files, which decode a row of blocks at a time).
    /// DCT scaling does not shrink it.
    uint64_t coefficient_bytes;
    /// Upper bound of libjpeg's other working memory (row groups, upsampling, colour conversion).
    uint64_t work_bytes;
} vtp_jpeg_info;

/// Parses the JPEG header of `data` (which must outlive the decoder). On failure
/// returns NULL and sets `*status` and `message`.
vtp_jpeg_decoder *vtp_jpeg_open(const uint8_t *data, size_t size, vtp_jpeg_info *info,
                                vtp_img_status *status, char *message);

/// Output size libjpeg gives when decoding at `scale_num`/8 (1...8) with DCT scaling, without
/// changing the decoder's own setting.
vtp_img_status vtp_jpeg_scaled_size(vtp_jpeg_decoder *decoder, int scale_num, uint32_t *width, uint32_t *height,
                                    char *message);

/// Makes later `vtp_jpeg_decode` calls scale by `scale_num`/8 with libjpeg's DCT scaling
/// (8 = full size, the default, which is what PIL decodes) and caps libjpeg's large
/// allocations at `max_memory` bytes (0 = no cap).
vtp_img_status vtp_jpeg_configure(vtp_jpeg_decoder *decoder, int scale_num, uint64_t max_memory, char *message);

/// Decodes all scanlines into `out` (`output_width * output_height * output_channels` bytes,
/// rows packed; the output size is the image size unless `vtp_jpeg_configure` set a scale).
vtp_img_status vtp_jpeg_decode(vtp_jpeg_decoder *decoder, uint8_t *out, size_t out_size, char *message);

void vtp_jpeg_close(vtp_jpeg_decoder *decoder);

// MARK: PNG decoding

typedef struct vtp_png_decoder vtp_png_decoder;

typedef struct {
    uint32_t width;
    uint32_t height;
    int32_t bit_depth;
    /// PNG colour type: 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA.
    int32_t color_type;
    int32_t interlaced;
    /// Entries in PLTE (0 when absent); `palette` holds them as RGB triples.
    int32_t palette_entries;
    uint8_t palette[256 * 3];
} vtp_png_info;

/// libpng transformations `vtp_png_decode` can apply, combined as a bit set.
enum {
    VTP_PNG_STRIP_16 = 1 << 0,      ///< keep the high byte of 16-bit samples
    VTP_PNG_STRIP_ALPHA = 1 << 1,   ///< drop the alpha channel
    VTP_PNG_GRAY_TO_RGB = 1 << 2,   ///< replicate gray into R, G and B
    VTP_PNG_EXPAND_GRAY = 1 << 3,   ///< scale 1/2/4-bit gray to 8 bits
    VTP_PNG_PACKING = 1 << 4,       ///< one byte per sample for bit depths below 8, unscaled
};

vtp_png_decoder *vtp_png_open(const uint8_t *data, size_t size, vtp_png_info *info,
                              vtp_img_status *status, char *message);

/// Applies `transforms`, checks that one output row is `row_bytes` long and decodes every
/// row (all interlace passes) into `out` (`row_bytes * height` bytes).
vtp_img_status vtp_png_decode(vtp_png_decoder *decoder, unsigned transforms, uint8_t *out,
                              size_t out_size, size_t row_bytes, char *message);

void vtp_png_close(vtp_png_decoder *decoder);

// MARK: Encoding

/// Encodes packed 8-bit RGB rows as a baseline JPEG (4:2:0). `*out` is malloc'ed; free with `vtp_img_free`.
vtp_img_status vtp_jpeg_encode_rgb(const uint8_t *rgb, uint32_t width, uint32_t height, int quality,
                                   uint8_t **out, size_t *out_size, char *message);

/// Encodes packed rows as PNG. `color_type` is 0, 2, 4 or 6; `bit_depth` 8 or 16
/// (16-bit samples big-endian, as PNG stores them). `*out` is malloc'ed; free with `vtp_img_free`.
vtp_img_status vtp_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int color_type,
                              int bit_depth, int interlaced, int compression_level,
                              uint8_t **out, size_t *out_size, char *message);

void vtp_img_free(void *pointer);

#ifdef __cplusplus
}
#endif
