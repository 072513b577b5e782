// A batch of compressed clusters (qcow2's zlib or zstd clusters, a VMDK's deflate grains) decoded in
// one call, for lib/formats/cluster-decompress.ts: Node's zlib.inflateRawSync and zstdDecompressSync
// build a new decoder, its JavaScript objects and an output buffer for every 64 KiB cluster, and the
// bytes are copied again into the memory kept for the write. Here one decoder per thread is reset
// for each cluster and decodes straight into that memory (or, for a dry pass, into one scratch
// cluster). The decoders are Node's own zlib and zstd: the symbols come from the node binary that
// loads this module (it is linked with -z now, so a Node without them fails to load it, and the
// JavaScript decoders are used), and the results are the same as Node's, byte for byte and refusal
// for refusal (cluster-decompress.ts `decompressCluster` documents what a cluster must be): they
// are called as Node calls them, with its output sizes (Node decodes into a chunk 64 bytes larger
// than a cluster, so an error met within those 64 bytes is named, past them the data is "more"). A
// deflate cluster is first given to Debian's libdeflate, which decodes a whole buffer faster; zlib
// decides every cluster libdeflate does not decode to exactly one cluster.
//
// JavaScript sees one function:
//   decodeClusters(codec, inputs, clusterSize, output): undefined when every input decoded to
//   exactly clusterSize bytes (into output one after another, when output is a Uint8Array; checked
//   and dropped when it is null), else [index, reason] for the first that did not.
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libdeflate.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

// qcow2's largest cluster (2 MiB); a VMDK grain is smaller.
#define MAX_CLUSTER (2 * 1024 * 1024)
// qemu writes one frame a cluster; each costs a call, so a cluster of thousands of empty frames
// would be made to be slow (decompressCluster refuses the same).
#define MAX_FRAMES 64
// What Node's output chunk holds beyond a cluster (decompressCluster's chunkSize: clusterSize + 64).
#define SLACK 64
// A zstd context that grew past this (a frame's window buffers: only frames qemu does not write
// need them) is freed after its cluster rather than kept.
#define ZSTD_KEPT_AT_MOST (4 * 1024 * 1024)

enum codec { ZLIB, ZSTD, DEFLATE };

// One thread's decoders (Node-API instance data: each worker thread loads its own), made when first
// needed and kept: inflate with qcow2's 4 KiB window, inflate with a full window (zlib-wrapped or
// raw, for grains), a zstd context, libdeflate's decompressor, the scratch cluster a dry pass
// decodes into, and a chunk of Node's size for zstd frames that do not say they fit.
typedef struct {
  bool raw12_open, raw15_open, wrapped15_open;
  z_stream raw12, raw15, wrapped15;
  ZSTD_DCtx *zstd;
  struct libdeflate_decompressor *whole;
  uint8_t *scratch;
  size_t scratch_size;
  uint8_t *chunk;
  size_t chunk_size;
} decoders;

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  decoders *d = data;
  if (d->raw12_open) inflateEnd(&d->raw12);
  if (d->raw15_open) inflateEnd(&d->raw15);
  if (d->wrapped15_open) inflateEnd(&d->wrapped15);
  ZSTD_freeDCtx(d->zstd);
  if (d->whole) libdeflate_free_decompressor(d->whole);
  free(d->scratch);
  free(d->chunk);
  free(d);
}

// An inflate stream with `window_bits`, opened once and reset for each cluster; NULL when zlib
// cannot make one (out of memory).
static z_stream *inflater(bool *open, z_stream *strm, int window_bits) {
  if (*open) return inflateReset(strm) == Z_OK ? strm : NULL;
  memset(strm, 0, sizeof *strm);
  if (inflateInit2(strm, window_bits) != Z_OK) return NULL;
  *open = true;
  return strm;
}

// Why inflate failed, in Node's words: zlib's own message where it gives one.
static const char *inflate_error(z_stream *strm, int ret) {
  if (strm->msg != NULL) return strm->msg;
  return ret == Z_NEED_DICT ? "Missing dictionary" : "Zlib error";
}

// `*buffer` at least `size` bytes (kept for the next call), or false.
static bool at_least(uint8_t **buffer, size_t *have, size_t size) {
  if (*have >= size) return true;
  free(*buffer);
  *buffer = malloc(size);
  *have = *buffer ? size : 0;
  return *buffer != NULL;
}

// One cluster by inflate, as Node's inflate(Raw)Sync with maxOutputLength = size and Z_SYNC_FLUSH
// decodes it: the stream need not end (qemu accepts one that fills the cluster with its end marker
// past the stored sectors), the bytes after its end are ignored, more output than a cluster is
// refused. NULL when it is one cluster, else why not (`text` holds a reason made here).
static const char *inflate_cluster(z_stream *strm, const uint8_t *in, size_t in_size, uint8_t *out, size_t size,
                                   const char *verb, char *text, size_t text_size) {
  if (in_size > UINT32_MAX) return "more compressed data than a cluster can hold";
  strm->next_in = (Bytef *)in;
  strm->avail_in = (uInt)in_size;
  strm->next_out = out;
  strm->avail_out = (uInt)size;
  int ret = inflate(strm, Z_SYNC_FLUSH);
  if (ret != Z_OK && ret != Z_STREAM_END && ret != Z_BUF_ERROR) return inflate_error(strm, ret);
  size_t produced = size - strm->avail_out;
  if (produced < size) {
    snprintf(text, text_size, "it %s to %zu bytes", verb, produced);
    return text;
  }
  if (ret == Z_STREAM_END) return NULL;
  // The cluster is full: Node's chunk goes on for SLACK bytes, where an error is still named; any
  // output there is a longer stream.
  uint8_t slack[SLACK];
  strm->next_out = slack;
  strm->avail_out = SLACK;
  ret = inflate(strm, Z_SYNC_FLUSH);
  if (ret != Z_OK && ret != Z_STREAM_END && ret != Z_BUF_ERROR) return inflate_error(strm, ret);
  if (strm->avail_out < SLACK) {
    snprintf(text, text_size, "it %s to more", verb);
    return text;
  }
  return NULL;
}

// libdeflate decodes a whole buffer faster than zlib streams it (~20 % here). True when it decoded a
// complete stream to exactly `size` bytes, which zlib would also have taken (the same bytes: a
// distance past the bytes decoded so far is refused by both); anything else (a stream short of a
// cluster or longer, without its end marker, corrupt) is decoded again by zlib, whose verdict and
// words stand.
static bool whole_cluster(decoders *d, bool wrapped, const uint8_t *in, size_t in_size, uint8_t *out, size_t size) {
  if (d->whole == NULL && (d->whole = libdeflate_alloc_decompressor()) == NULL) return false;
  size_t used = 0, produced = 0;
  enum libdeflate_result result =
      wrapped ? libdeflate_zlib_decompress_ex(d->whole, in, in_size, out, size, &used, &produced)
              : libdeflate_deflate_decompress_ex(d->whole, in, in_size, out, size, &used, &produced);
  return result == LIBDEFLATE_SUCCESS && produced == size;
}

static uint32_t le32(const uint8_t *p) {
  return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// One zstd frame as Node's zstdDecompressSync decodes it (a new session, the streaming decoder,
// output into `out`, `room` bytes, until the frame ends, the output is full or nothing more comes).
// The bytes made go to `*made`; NULL, or zstd's words for why the frame is bad.
static const char *zstd_frame(ZSTD_DCtx *dctx, const uint8_t *frame, size_t frame_size, uint8_t *out, size_t room,
                              size_t *made) {
  ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
  ZSTD_inBuffer input = {frame, frame_size, 0};
  ZSTD_outBuffer output = {out, room, 0};
  for (;;) {
    size_t in_before = input.pos, out_before = output.pos;
    size_t left = ZSTD_decompressStream(dctx, &output, &input);
    *made = output.pos;
    if (ZSTD_isError(left)) return ZSTD_getErrorName(left);
    if (left == 0 || output.pos == output.size) return NULL;
    if (input.pos == in_before && output.pos == out_before) return NULL;
  }
}

// One cluster of zstd frames, decoded until it is full; the bytes after them are garbage. Frames are
// found by walking their block headers (RFC 8878 section 3.1.1), as decompressCluster does, with
// its words. A frame that says its content fits the room left is decoded straight into it; any
// other is decoded as Node does, into a chunk of a cluster and SLACK bytes, and copied (an error
// met within the chunk is named; output past the room is "more").
static const char *zstd_cluster(decoders *d, const uint8_t *in, size_t in_size, uint8_t *out, size_t size,
                                char *text, size_t text_size) {
  size_t produced = 0, start = 0;
  int frames = 0;
  while (produced < size) {
    if (start >= in_size) {
      snprintf(text, text_size, "it decompresses to %zu bytes", produced);
      return text;
    }
    if (start + 8 > in_size) return "the data ends inside a frame header";
    uint32_t magic = le32(in + start);
    if ((magic >> 4) == 0x184d2a5) {  // a skippable frame
      start += 8 + (size_t)le32(in + start + 4);
      continue;
    }
    if (magic != 0xfd2fb528) return "no zstd frame where one should start";
    if (++frames > MAX_FRAMES) return "more than 64 zstd frames in one cluster";
    uint8_t descriptor = in[start + 4];
    if (descriptor & 0x08) return "a zstd frame header has its reserved bit set";
    size_t single_segment = (descriptor >> 5) & 1;
    static const size_t content_size_bytes[2][4] = {{0, 2, 4, 8}, {1, 2, 4, 8}};
    static const size_t dictionary_bytes[4] = {0, 1, 2, 4};
    size_t end = start + 5 + (single_segment ? 0 : 1) + dictionary_bytes[descriptor & 3] +
                 content_size_bytes[single_segment][descriptor >> 6];
    for (bool last = false; !last;) {
      if (end + 3 > in_size) return "the data ends inside a zstd frame";
      uint32_t block = in[end] | (uint32_t)in[end + 1] << 8 | (uint32_t)in[end + 2] << 16;
      uint32_t type = (block >> 1) & 3;
      if (type == 3) return "a zstd block has the reserved type";
      end += 3 + (type == 1 ? 1 : block >> 3);
      last = block & 1;
    }
    if (descriptor & 0x04) end += 4;
    if (end > in_size) return "the data ends inside a zstd frame";
    size_t room = size - produced, made = 0;
    unsigned long long content = ZSTD_getFrameContentSize(in + start, end - start);
    const char *reason;
    if (content <= room) {
      reason = zstd_frame(d->zstd, in + start, end - start, out + produced, room, &made);
    } else {
      if (!at_least(&d->chunk, &d->chunk_size, size + SLACK)) return "out of memory";
      reason = zstd_frame(d->zstd, in + start, end - start, d->chunk, size + SLACK, &made);
      if (reason == NULL && made > room) return "it decompresses to more";
      if (reason == NULL) memcpy(out + produced, d->chunk, made);
    }
    if (reason != NULL) return reason;
    produced += made;
    start = end;
  }
  return NULL;
}

static napi_value throw_error(napi_env env, const char *message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

// The bytes of a typed array argument, or false.
static bool bytes_of(napi_env env, napi_value value, uint8_t **data, size_t *length) {
  bool is_typed_array = false;
  napi_typedarray_type type;
  void *base = NULL;
  if (napi_is_typedarray(env, value, &is_typed_array) != napi_ok || !is_typed_array ||
      napi_get_typedarray_info(env, value, &type, length, &base, NULL, NULL) != napi_ok || type != napi_uint8_array)
    return false;
  *data = base;
  return true;
}

static decoders *decoders_of(napi_env env) {
  decoders *d = NULL;
  if (napi_get_instance_data(env, (void **)&d) == napi_ok && d != NULL) return d;
  d = calloc(1, sizeof *d);
  if (d == NULL) return NULL;
  if (napi_set_instance_data(env, d, finalize, NULL) != napi_ok) {
    free(d);
    return NULL;
  }
  return d;
}

// decodeClusters(codec, inputs, clusterSize, output)
static napi_value decode_clusters(napi_env env, napi_callback_info info) {
  static const char *usage = "decodeClusters(codec, inputs, clusterSize, output)";
  size_t argc = 4;
  napi_value argv[4];
  char name[16];
  size_t name_length = 0;
  uint32_t count = 0;
  double cluster_size = 0;
  bool is_array = false;
  napi_valuetype output_type;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4 ||
      napi_get_value_string_utf8(env, argv[0], name, sizeof name, &name_length) != napi_ok ||
      napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[1], &count) != napi_ok ||
      napi_get_value_double(env, argv[2], &cluster_size) != napi_ok ||
      napi_typeof(env, argv[3], &output_type) != napi_ok)
    return throw_error(env, usage);
  enum codec codec;
  if (strcmp(name, "zlib") == 0)
    codec = ZLIB;
  else if (strcmp(name, "zstd") == 0)
    codec = ZSTD;
  else if (strcmp(name, "deflate") == 0)
    codec = DEFLATE;
  else
    return throw_error(env, "decodeClusters: codec is zlib, zstd or deflate");
  if (!(cluster_size >= 1 && cluster_size <= MAX_CLUSTER) || cluster_size != (double)(size_t)cluster_size)
    return throw_error(env, "decodeClusters: a cluster is 1 byte to 2 MiB");
  size_t size = (size_t)cluster_size;
  uint8_t *output = NULL;
  size_t output_length = 0;
  if (output_type != napi_null) {
    if (!bytes_of(env, argv[3], &output, &output_length)) return throw_error(env, usage);
    if (output_length < (size_t)count * size)
      return throw_error(env, "decodeClusters: the output holds fewer clusters than the inputs");
  }
  decoders *d = decoders_of(env);
  if (d == NULL) return throw_error(env, "out of memory");
  if (output == NULL && !at_least(&d->scratch, &d->scratch_size, size)) return throw_error(env, "out of memory");
  if (codec == ZSTD && d->zstd == NULL && (d->zstd = ZSTD_createDCtx()) == NULL)
    return throw_error(env, "out of memory");
  char text[64];
  for (uint32_t i = 0; i < count; i++) {
    napi_value element;
    uint8_t *in = NULL;
    size_t in_size = 0;
    if (napi_get_element(env, argv[1], i, &element) != napi_ok || !bytes_of(env, element, &in, &in_size))
      return throw_error(env, usage);
    uint8_t *out = output ? output + (size_t)i * size : d->scratch;
    const char *reason;
    if (codec == ZSTD) {
      reason = zstd_cluster(d, in, in_size, out, size, text, sizeof text);
      if (ZSTD_sizeof_DCtx(d->zstd) > ZSTD_KEPT_AT_MOST) {
        ZSTD_freeDCtx(d->zstd);
        d->zstd = NULL;
        if ((d->zstd = ZSTD_createDCtx()) == NULL) return throw_error(env, "out of memory");
      }
    } else {
      // A grain is a zlib stream (RFC 1950: method 8 and a header check) or raw deflate, with a full
      // window; a qcow2 cluster is raw deflate with a 4 KiB window (qemu's windowBits -12).
      bool wrapped = codec == DEFLATE && in_size >= 2 && (in[0] & 0x0f) == 8 && (in[0] * 256 + in[1]) % 31 == 0;
      if (whole_cluster(d, wrapped, in, in_size, out, size)) continue;
      z_stream *strm = codec == ZLIB ? inflater(&d->raw12_open, &d->raw12, -12)
                       : wrapped     ? inflater(&d->wrapped15_open, &d->wrapped15, 15)
                                     : inflater(&d->raw15_open, &d->raw15, -15);
      if (strm == NULL) return throw_error(env, "out of memory");
      reason = inflate_cluster(strm, in, in_size, out, size, codec == ZLIB ? "decompresses" : "inflates", text,
                               sizeof text);
    }
    if (reason == NULL) continue;
    napi_value failure, index, why;
    if (napi_create_array_with_length(env, 2, &failure) != napi_ok || napi_create_uint32(env, i, &index) != napi_ok ||
        napi_create_string_utf8(env, reason, NAPI_AUTO_LENGTH, &why) != napi_ok ||
        napi_set_element(env, failure, 0, index) != napi_ok || napi_set_element(env, failure, 1, why) != napi_ok)
      return throw_error(env, "cannot return why a cluster did not decode");
    return failure;
  }
  return NULL;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value fn;
  if (napi_create_function(env, "decodeClusters", NAPI_AUTO_LENGTH, decode_clusters, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "decodeClusters", fn) != napi_ok)
    return NULL;
  return exports;
}
