#include "vtp_image_shims.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

static void copy_message(char *destination, const char *source) {
    if (destination == NULL) {
        return;
    }
    snprintf(destination, VTP_IMG_MESSAGE_CAPACITY, "%s", source != NULL ? source : "");
}

// MARK: - libjpeg error handling

/// libjpeg's error manager extended with the jump target and what the warnings said.
/// Lives inside heap-allocated contexts so nothing a longjmp skips over sits in a register.
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    /// Set when libjpeg ran out of input and substituted a fake EOI marker.
    int hit_eof;
    char message[JMSG_LENGTH_MAX];
} vtp_jpeg_error;

static void vtp_jpeg_error_exit(j_common_ptr cinfo) {
    vtp_jpeg_error *error = (vtp_jpeg_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, error->message);
    longjmp(error->jump, 1);
}

// Warnings are not printed; running out of data is remembered because jpeg_mem_src
// pads a short file with an EOI marker and libjpeg would otherwise return grey rows,
// where PIL reports the file as truncated.
static void vtp_jpeg_emit_message(j_common_ptr cinfo, int msg_level) {
    vtp_jpeg_error *error = (vtp_jpeg_error *)cinfo->err;
    if (msg_level < 0) {
        cinfo->err->num_warnings++;
        if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
            error->hit_eof = 1;
        }
    }
}

static void vtp_jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void vtp_jpeg_install_errors(vtp_jpeg_error *error) {
    jpeg_std_error(&error->pub);
    error->pub.error_exit = vtp_jpeg_error_exit;
    error->pub.emit_message = vtp_jpeg_emit_message;
    error->pub.output_message = vtp_jpeg_output_message;
    error->hit_eof = 0;
    error->message[0] = 0;
}

// MARK: - JPEG decoding

struct vtp_jpeg_decoder {
    struct jpeg_decompress_struct cinfo;
    vtp_jpeg_error error;
};

static vtp_img_status vtp_jpeg_failure_status(const vtp_jpeg_decoder *decoder) {
    return decoder->error.hit_eof ? VTP_IMG_TRUNCATED : VTP_IMG_CORRUPT;
}

vtp_jpeg_decoder *vtp_jpeg_open(const uint8_t *data, size_t size, vtp_jpeg_info *info,
                                vtp_img_status *status, char *message) {
    vtp_jpeg_decoder *decoder = calloc(1, sizeof(vtp_jpeg_decoder));
    if (decoder == NULL) {
        *status = VTP_IMG_RESOURCE;
        copy_message(message, "out of memory");
        return NULL;
    }
    decoder->cinfo.err = &decoder->error.pub;
    vtp_jpeg_install_errors(&decoder->error);
    if (setjmp(decoder->error.jump)) {
        *status = vtp_jpeg_failure_status(decoder);
        copy_message(message, decoder->error.message);
        jpeg_destroy_decompress(&decoder->cinfo);
        free(decoder);
        return NULL;
    }
    jpeg_create_decompress(&decoder->cinfo);
    jpeg_mem_src(&decoder->cinfo, data, (unsigned long)size);
    jpeg_read_header(&decoder->cinfo, TRUE);

    int components = decoder->cinfo.num_components;
    if (components == 1 || components == 3) {
        // Gray sources are replicated into RGB by libjpeg, byte for byte what PIL's L->RGB does.
        decoder->cinfo.out_color_space = JCS_RGB;
        info->output_channels = 3;
    } else if (components == 4) {
        // PIL asks libjpeg for CMYK (YCCK is converted by the library) and inverts afterwards.
        decoder->cinfo.out_color_space = JCS_CMYK;
        info->output_channels = 4;
    } else {
        *status = VTP_IMG_UNSUPPORTED;
        snprintf(message, VTP_IMG_MESSAGE_CAPACITY, "JPEG with %d components", components);
        jpeg_destroy_decompress(&decoder->cinfo);
        free(decoder);
        return NULL;
    }
    info->width = decoder->cinfo.image_width;
    info->height = decoder->cinfo.image_height;
    info->components = components;
    info->coefficient_bytes = 0;
    int max_v_samp = 1;
    // jpeg_read_header stops at the first SOS, so the component geometry and the first scan's
    // component count are known: libjpeg keeps every coefficient of the image in memory
    // exactly when more than one scan is needed (progressive, or non-interleaved scans).
    for (int c = 0; c < components; c++) {
        const jpeg_component_info *comp = &decoder->cinfo.comp_info[c];
        uint64_t wide = comp->width_in_blocks, high = comp->height_in_blocks;
        uint64_t h = comp->h_samp_factor > 0 ? (uint64_t)comp->h_samp_factor : 1;
        uint64_t v = comp->v_samp_factor > 0 ? (uint64_t)comp->v_samp_factor : 1;
        if (comp->v_samp_factor > max_v_samp) {
            max_v_samp = comp->v_samp_factor;
        }
        if (decoder->cinfo.progressive_mode || decoder->cinfo.comps_in_scan < components) {
            info->coefficient_bytes += ((wide + h - 1) / h * h) * ((high + v - 1) / v * v) * DCTSIZE2 * sizeof(JCOEF);
        }
    }
    // Row groups of every component (with context rows), upsampled rows and converted rows, all
    // at most a few row groups of the full width: 16 bytes per sample per row of a row group bounds them.
    info->work_bytes = ((uint64_t)decoder->cinfo.image_width + 64) * (uint64_t)components * (uint64_t)max_v_samp * DCTSIZE * 16
                       + (1u << 20);
    *status = VTP_IMG_OK;
    return decoder;
}

vtp_img_status vtp_jpeg_scaled_size(vtp_jpeg_decoder *decoder, int scale_num, uint32_t *width, uint32_t *height,
                                    char *message) {
    if (setjmp(decoder->error.jump)) {
        copy_message(message, decoder->error.message);
        return vtp_jpeg_failure_status(decoder);
    }
    unsigned int saved_num = decoder->cinfo.scale_num, saved_denom = decoder->cinfo.scale_denom;
    decoder->cinfo.scale_num = (unsigned int)scale_num;
    decoder->cinfo.scale_denom = 8;
    jpeg_calc_output_dimensions(&decoder->cinfo);
    *width = decoder->cinfo.output_width;
    *height = decoder->cinfo.output_height;
    decoder->cinfo.scale_num = saved_num;
    decoder->cinfo.scale_denom = saved_denom;
    return VTP_IMG_OK;
}

vtp_img_status vtp_jpeg_configure(vtp_jpeg_decoder *decoder, int scale_num, uint64_t max_memory, char *message) {
    (void)message;
    if (scale_num < 8) {
        decoder->cinfo.scale_num = (unsigned int)scale_num;
        decoder->cinfo.scale_denom = 8;
    }
    // Only the whole-image arrays ask jpeg_mem_available; with no backing store, libjpeg
    // reports an error rather than exceed this.
    decoder->cinfo.mem->max_memory_to_use = (long)(max_memory > (uint64_t)LONG_MAX ? (uint64_t)LONG_MAX : max_memory);
    return VTP_IMG_OK;
}

vtp_img_status vtp_jpeg_decode(vtp_jpeg_decoder *decoder, uint8_t *out, size_t out_size, char *message) {
    if (setjmp(decoder->error.jump)) {
        copy_message(message, decoder->error.message);
        return vtp_jpeg_failure_status(decoder);
    }
    jpeg_start_decompress(&decoder->cinfo);
    size_t stride = (size_t)decoder->cinfo.output_width * (size_t)decoder->cinfo.output_components;
    if (stride * (size_t)decoder->cinfo.output_height != out_size) {
        jpeg_abort_decompress(&decoder->cinfo);
        copy_message(message, "output buffer size does not match the JPEG dimensions");
        return VTP_IMG_RESOURCE;
    }
    enum { batch = 16 };
    JSAMPROW rows[batch];
    while (decoder->cinfo.output_scanline < decoder->cinfo.output_height) {
        JDIMENSION first = decoder->cinfo.output_scanline;
        JDIMENSION count = decoder->cinfo.output_height - first;
        if (count > batch) {
            count = batch;
        }
        for (JDIMENSION i = 0; i < count; i++) {
            rows[i] = out + (size_t)(first + i) * stride;
        }
        jpeg_read_scanlines(&decoder->cinfo, rows, count);
    }
    if (decoder->error.hit_eof) {
        jpeg_abort_decompress(&decoder->cinfo);
        copy_message(message, "premature end of JPEG data");
        return VTP_IMG_TRUNCATED;
    }
    jpeg_finish_decompress(&decoder->cinfo);
    return VTP_IMG_OK;
}

void vtp_jpeg_close(vtp_jpeg_decoder *decoder) {
    if (decoder == NULL) {
        return;
    }
    jpeg_destroy_decompress(&decoder->cinfo);
    free(decoder);
}

// MARK: - PNG decoding

struct vtp_png_decoder {
    png_structp png;
    png_infop info;
    const uint8_t *data;
    size_t size;
    size_t offset;
    int truncated;
    char message[VTP_IMG_MESSAGE_CAPACITY];
};

static void vtp_png_error(png_structp png, png_const_charp text) {
    struct vtp_png_decoder *decoder = png_get_error_ptr(png);
    copy_message(decoder->message, text);
    png_longjmp(png, 1);
}

static void vtp_png_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;
}

static void vtp_png_read(png_structp png, png_bytep out, size_t count) {
    struct vtp_png_decoder *decoder = png_get_io_ptr(png);
    if (decoder->size - decoder->offset < count) {
        decoder->truncated = 1;
        png_error(png, "unexpected end of PNG data");
    }
    memcpy(out, decoder->data + decoder->offset, count);
    decoder->offset += count;
}

static vtp_img_status vtp_png_failure_status(const vtp_png_decoder *decoder) {
    return decoder->truncated ? VTP_IMG_TRUNCATED : VTP_IMG_CORRUPT;
}

void vtp_png_close(vtp_png_decoder *decoder) {
    if (decoder == NULL) {
        return;
    }
    if (decoder->png != NULL) {
        png_destroy_read_struct(&decoder->png, decoder->info != NULL ? &decoder->info : NULL, NULL);
    }
    free(decoder);
}

vtp_png_decoder *vtp_png_open(const uint8_t *data, size_t size, vtp_png_info *info,
                              vtp_img_status *status, char *message) {
    vtp_png_decoder *decoder = calloc(1, sizeof(vtp_png_decoder));
    if (decoder == NULL) {
        *status = VTP_IMG_RESOURCE;
        copy_message(message, "out of memory");
        return NULL;
    }
    decoder->data = data;
    decoder->size = size;
    decoder->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, decoder, vtp_png_error, vtp_png_warning);
    if (decoder->png != NULL) {
        decoder->info = png_create_info_struct(decoder->png);
    }
    if (decoder->png == NULL || decoder->info == NULL) {
        vtp_png_close(decoder);
        *status = VTP_IMG_RESOURCE;
        copy_message(message, "could not create the libpng reader");
        return NULL;
    }
    if (setjmp(png_jmpbuf(decoder->png))) {
        *status = vtp_png_failure_status(decoder);
        copy_message(message, decoder->message);
        vtp_png_close(decoder);
        return NULL;
    }
    png_set_read_fn(decoder->png, decoder, vtp_png_read);
    // The caller enforces its own pixel-count limit; libpng's default 1,000,000 per side is lifted.
    png_set_user_limits(decoder->png, 0x7fffffff, 0x7fffffff);
    /* Ancillary chunks (zTXt, iCCP, ...) decompress outside the decode budget: a 200-byte zTXt
       made libpng allocate 2 GB under the fuzzer. 8 MiB is far above any real text or ICC profile. */
    png_set_chunk_malloc_max(decoder->png, 8u << 20);
    png_set_chunk_cache_max(decoder->png, 1000);
    png_read_info(decoder->png, decoder->info);

    info->width = png_get_image_width(decoder->png, decoder->info);
    info->height = png_get_image_height(decoder->png, decoder->info);
    info->bit_depth = png_get_bit_depth(decoder->png, decoder->info);
    info->color_type = png_get_color_type(decoder->png, decoder->info);
    info->interlaced = png_get_interlace_type(decoder->png, decoder->info) != PNG_INTERLACE_NONE;
    info->palette_entries = 0;
    png_colorp palette = NULL;
    int entries = 0;
    if (png_get_PLTE(decoder->png, decoder->info, &palette, &entries) & PNG_INFO_PLTE) {
        if (entries > 256) {
            entries = 256;
        }
        for (int i = 0; i < entries; i++) {
            info->palette[i * 3 + 0] = palette[i].red;
            info->palette[i * 3 + 1] = palette[i].green;
            info->palette[i * 3 + 2] = palette[i].blue;
        }
        info->palette_entries = entries;
    }
    *status = VTP_IMG_OK;
    return decoder;
}

vtp_img_status vtp_png_decode(vtp_png_decoder *decoder, unsigned transforms, uint8_t *out,
                              size_t out_size, size_t row_bytes, char *message) {
    if (setjmp(png_jmpbuf(decoder->png))) {
        copy_message(message, decoder->message);
        return vtp_png_failure_status(decoder);
    }
    png_structp png = decoder->png;
    if (transforms & VTP_PNG_STRIP_16) {
        png_set_strip_16(png);
    }
    if (transforms & VTP_PNG_STRIP_ALPHA) {
        png_set_strip_alpha(png);
    }
    if (transforms & VTP_PNG_EXPAND_GRAY) {
        png_set_expand_gray_1_2_4_to_8(png);
    }
    if (transforms & VTP_PNG_PACKING) {
        png_set_packing(png);
    }
    if (transforms & VTP_PNG_GRAY_TO_RGB) {
        png_set_gray_to_rgb(png);
    }
    int passes = 1;
    if (png_get_interlace_type(png, decoder->info) != PNG_INTERLACE_NONE) {
        passes = png_set_interlace_handling(png);
    }
    png_read_update_info(png, decoder->info);

    uint32_t height = png_get_image_height(png, decoder->info);
    size_t actual_row_bytes = png_get_rowbytes(png, decoder->info);
    if (actual_row_bytes != row_bytes || row_bytes * (size_t)height != out_size) {
        snprintf(message, VTP_IMG_MESSAGE_CAPACITY, "PNG rows are %zu bytes, expected %zu",
                 actual_row_bytes, row_bytes);
        return VTP_IMG_RESOURCE;
    }
    // What png_read_image does, one row at a time: no array of row pointers, which for a
    // tall image (2 x 50,000,000) would cost 8 bytes a row on top of the pixels.
    for (int pass = 0; pass < passes; pass++) {
        for (uint32_t y = 0; y < height; y++) {
            png_read_row(png, out + (size_t)y * row_bytes, NULL);
        }
    }
    return VTP_IMG_OK;
}

// MARK: - JPEG encoding

typedef struct {
    struct jpeg_compress_struct cinfo;
    vtp_jpeg_error error;
    unsigned char *buffer;
    unsigned long size;
} vtp_jpeg_encoder;

vtp_img_status vtp_jpeg_encode_rgb(const uint8_t *rgb, uint32_t width, uint32_t height, int quality,
                                   uint8_t **out, size_t *out_size, char *message) {
    vtp_jpeg_encoder *encoder = calloc(1, sizeof(vtp_jpeg_encoder));
    if (encoder == NULL) {
        copy_message(message, "out of memory");
        return VTP_IMG_RESOURCE;
    }
    encoder->cinfo.err = &encoder->error.pub;
    vtp_jpeg_install_errors(&encoder->error);
    if (setjmp(encoder->error.jump)) {
        copy_message(message, encoder->error.message);
        jpeg_destroy_compress(&encoder->cinfo);
        free(encoder->buffer);
        free(encoder);
        return VTP_IMG_CORRUPT;
    }
    jpeg_create_compress(&encoder->cinfo);
    jpeg_mem_dest(&encoder->cinfo, &encoder->buffer, &encoder->size);
    encoder->cinfo.image_width = width;
    encoder->cinfo.image_height = height;
    encoder->cinfo.input_components = 3;
    encoder->cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&encoder->cinfo);
    jpeg_set_quality(&encoder->cinfo, quality, TRUE);
    jpeg_start_compress(&encoder->cinfo, TRUE);
    size_t stride = (size_t)width * 3;
    while (encoder->cinfo.next_scanline < encoder->cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)encoder->cinfo.next_scanline * stride);
        jpeg_write_scanlines(&encoder->cinfo, &row, 1);
    }
    jpeg_finish_compress(&encoder->cinfo);
    jpeg_destroy_compress(&encoder->cinfo);
    *out = encoder->buffer;
    *out_size = encoder->size;
    free(encoder);
    return VTP_IMG_OK;
}

// MARK: - PNG encoding

typedef struct {
    png_structp png;
    png_infop info;
    uint8_t *buffer;
    size_t size;
    size_t capacity;
    png_bytep *rows;
    char message[VTP_IMG_MESSAGE_CAPACITY];
} vtp_png_encoder;

static void vtp_png_encode_error(png_structp png, png_const_charp text) {
    vtp_png_encoder *encoder = png_get_error_ptr(png);
    copy_message(encoder->message, text);
    png_longjmp(png, 1);
}

static void vtp_png_write(png_structp png, png_bytep data, size_t count) {
    vtp_png_encoder *encoder = png_get_io_ptr(png);
    if (encoder->capacity - encoder->size < count) {
        size_t capacity = encoder->capacity > 0 ? encoder->capacity : 65536;
        while (capacity - encoder->size < count) {
            capacity *= 2;
        }
        uint8_t *grown = realloc(encoder->buffer, capacity);
        if (grown == NULL) {
            png_error(png, "out of memory");
        }
        encoder->buffer = grown;
        encoder->capacity = capacity;
    }
    memcpy(encoder->buffer + encoder->size, data, count);
    encoder->size += count;
}

static void vtp_png_flush(png_structp png) { (void)png; }

static void vtp_png_encoder_free(vtp_png_encoder *encoder, int keep_buffer) {
    if (encoder->png != NULL) {
        png_destroy_write_struct(&encoder->png, encoder->info != NULL ? &encoder->info : NULL);
    }
    if (!keep_buffer) {
        free(encoder->buffer);
    }
    free(encoder->rows);
    free(encoder);
}

vtp_img_status vtp_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int color_type,
                              int bit_depth, int interlaced, int compression_level,
                              uint8_t **out, size_t *out_size, char *message) {
    int channels;
    switch (color_type) {
        case PNG_COLOR_TYPE_GRAY: channels = 1; break;
        case PNG_COLOR_TYPE_RGB: channels = 3; break;
        case PNG_COLOR_TYPE_GRAY_ALPHA: channels = 2; break;
        case PNG_COLOR_TYPE_RGB_ALPHA: channels = 4; break;
        default:
            copy_message(message, "unsupported PNG colour type");
            return VTP_IMG_UNSUPPORTED;
    }
    if (bit_depth != 8 && bit_depth != 16) {
        copy_message(message, "unsupported PNG bit depth");
        return VTP_IMG_UNSUPPORTED;
    }
    vtp_png_encoder *encoder = calloc(1, sizeof(vtp_png_encoder));
    if (encoder == NULL) {
        copy_message(message, "out of memory");
        return VTP_IMG_RESOURCE;
    }
    encoder->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, encoder, vtp_png_encode_error, vtp_png_warning);
    if (encoder->png != NULL) {
        encoder->info = png_create_info_struct(encoder->png);
    }
    encoder->rows = malloc(sizeof(png_bytep) * (height > 0 ? height : 1));
    if (encoder->png == NULL || encoder->info == NULL || encoder->rows == NULL) {
        vtp_png_encoder_free(encoder, 0);
        copy_message(message, "could not create the libpng writer");
        return VTP_IMG_RESOURCE;
    }
    if (setjmp(png_jmpbuf(encoder->png))) {
        copy_message(message, encoder->message);
        vtp_png_encoder_free(encoder, 0);
        return VTP_IMG_CORRUPT;
    }
    png_set_write_fn(encoder->png, encoder, vtp_png_write, vtp_png_flush);
    png_set_compression_level(encoder->png, compression_level);
    png_set_IHDR(encoder->png, encoder->info, width, height, bit_depth, color_type,
                 interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(encoder->png, encoder->info);
    size_t stride = (size_t)width * (size_t)channels * (size_t)(bit_depth / 8);
    for (uint32_t y = 0; y < height; y++) {
        encoder->rows[y] = (png_bytep)(pixels + (size_t)y * stride);
    }
    // png_write_image runs every Adam7 pass itself when the image is interlaced.
    png_write_image(encoder->png, encoder->rows);
    png_write_end(encoder->png, NULL);
    *out = encoder->buffer;
    *out_size = encoder->size;
    vtp_png_encoder_free(encoder, 1);
    return VTP_IMG_OK;
}

void vtp_img_free(void *pointer) { free(pointer); }
