// xz and bzip2 streams decoded by the system's liblzma and libbz2, for lib/formats/native-decoders.ts:
// the bundled decoders (xz-embedded in WebAssembly, seek-bzip in JavaScript) run at about a half
// and a third of the C tools' speed, and liblzma decodes a stream of several blocks on several
// threads. Built by scripts/native.ts against Node-API's headers and the two libraries; where it
// will not load (a system without them), the bundled decoders are used.
//
// JavaScript sees three functions:
//   xzDecoder(threads, memlimitThreading, memlimitStop) and bzip2Decoder(): a decoder of one stream;
//   decode(decoder, input, output, finish): [consumed, produced, status], status "more", "end" or
//     why the data cannot be decoded ("corrupt", "format", "options", "memory limit", "memory",
//     "truncated"); consumed and produced are bytes of input and output this call used;
//   restart(decoder): a bzip2 decoder ready for the next stream (streams end to end), without a new one;
//   end(decoder): frees it now (otherwise when it is collected).
#include <bzlib.h>
#include <lzma.h>
#include <math.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum kind { XZ, BZIP2 };

typedef struct {
  enum kind kind;
  bool open;
  lzma_stream xz;
  bz_stream bz;
} decoder;

static void release(decoder *d) {
  if (!d->open) return;
  if (d->kind == XZ)
    lzma_end(&d->xz);
  else
    BZ2_bzDecompressEnd(&d->bz);
  d->open = false;
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  release((decoder *)data);
  free(data);
}

static napi_value throw_error(napi_env env, const char *message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

static napi_value wrap(napi_env env, decoder *d) {
  napi_value external;
  if (napi_create_external(env, d, finalize, NULL, &external) != napi_ok) {
    release(d);
    free(d);
    return throw_error(env, "cannot wrap the decoder");
  }
  return external;
}

// A count or a size: finite, not negative, and at most `max` (a cast of a larger double is undefined).
static bool number_arg(napi_env env, napi_value value, double max, double *out) {
  return napi_get_value_double(env, value, out) == napi_ok && isfinite(*out) && *out >= 0 && *out <= max;
}

// xzDecoder(threads, memlimitThreading, memlimitStop)
static napi_value xz_decoder(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  double threads, threading, stop;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      !number_arg(env, argv[0], 1024, &threads) || !number_arg(env, argv[1], 1e15, &threading) ||
      !number_arg(env, argv[2], 1e15, &stop))
    return throw_error(env, "xzDecoder(threads, memlimitThreading, memlimitStop)");
  decoder *d = calloc(1, sizeof *d);
  if (d == NULL) return throw_error(env, "out of memory");
  d->kind = XZ;
  d->xz = (lzma_stream)LZMA_STREAM_INIT;
  lzma_mt options;
  memset(&options, 0, sizeof options);
  // A check this liblzma cannot compute (a reserved id) is said, not skipped: the data is refused.
  options.flags = LZMA_TELL_UNSUPPORTED_CHECK;
  options.threads = threads < 1 ? 1 : (uint32_t)threads;
  // lzma_code returns at least this often (ms) while threads work, so output comes steadily.
  options.timeout = 300;
  options.memlimit_threading = (uint64_t)threading;
  options.memlimit_stop = (uint64_t)stop;
  if (lzma_stream_decoder_mt(&d->xz, &options) != LZMA_OK) {
    free(d);
    return throw_error(env, "cannot start an xz decoder");
  }
  d->open = true;
  return wrap(env, d);
}

// bzip2Decoder()
static napi_value bzip2_decoder(napi_env env, napi_callback_info info) {
  (void)info;
  decoder *d = calloc(1, sizeof *d);
  if (d == NULL) return throw_error(env, "out of memory");
  d->kind = BZIP2;
  if (BZ2_bzDecompressInit(&d->bz, 0, 0) != BZ_OK) {
    free(d);
    return throw_error(env, "cannot start a bzip2 decoder");
  }
  d->open = true;
  return wrap(env, d);
}

static bool bytes_arg(napi_env env, napi_value value, uint8_t **data, size_t *length) {
  bool is_typed_array = false;
  napi_typedarray_type type;
  void *pointer = NULL;
  if (napi_is_typedarray(env, value, &is_typed_array) != napi_ok || !is_typed_array) return false;
  if (napi_get_typedarray_info(env, value, &type, length, &pointer, NULL, NULL) != napi_ok ||
      type != napi_uint8_array)
    return false;
  *data = pointer;
  return true;
}

static const char *xz_status(lzma_ret ret) {
  switch (ret) {
    case LZMA_OK: return "more";
    case LZMA_STREAM_END: return "end";
    case LZMA_FORMAT_ERROR: return "format";
    case LZMA_OPTIONS_ERROR: return "options";
    case LZMA_MEMLIMIT_ERROR: return "memory limit";
    case LZMA_MEM_ERROR: return "memory";
    case LZMA_BUF_ERROR: return "truncated";
    case LZMA_UNSUPPORTED_CHECK: return "check";
    default: return "corrupt"; // LZMA_DATA_ERROR (a check that does not match too), and the rest
  }
}

static const char *bzip2_status(int ret) {
  switch (ret) {
    case BZ_OK: return "more";
    case BZ_STREAM_END: return "end";
    case BZ_DATA_ERROR_MAGIC: return "format";
    case BZ_MEM_ERROR: return "memory";
    default: return "corrupt"; // BZ_DATA_ERROR: a CRC that does not match too
  }
}

// decode(decoder, input, output, finish): [consumed, produced, status]
static napi_value decode(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  void *data = NULL;
  uint8_t *input, *output;
  size_t in_length, out_length;
  bool finish = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4 ||
      napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL ||
      !bytes_arg(env, argv[1], &input, &in_length) || !bytes_arg(env, argv[2], &output, &out_length) ||
      napi_get_value_bool(env, argv[3], &finish) != napi_ok)
    return throw_error(env, "decode(decoder, input, output, finish)");
  decoder *d = data;
  if (!d->open) return throw_error(env, "the decoder has ended");
  size_t consumed, produced;
  const char *status;
  if (d->kind == XZ) {
    d->xz.next_in = input;
    d->xz.avail_in = in_length;
    d->xz.next_out = output;
    d->xz.avail_out = out_length;
    lzma_ret ret = lzma_code(&d->xz, finish ? LZMA_FINISH : LZMA_RUN);
    consumed = in_length - d->xz.avail_in;
    produced = out_length - d->xz.avail_out;
    status = xz_status(ret);
  } else {
    // bz_stream counts in unsigned int: a call takes at most 1 GiB of either.
    unsigned int in_avail = in_length > (1u << 30) ? (1u << 30) : (unsigned int)in_length;
    unsigned int out_avail = out_length > (1u << 30) ? (1u << 30) : (unsigned int)out_length;
    d->bz.next_in = (char *)input;
    d->bz.avail_in = in_avail;
    d->bz.next_out = (char *)output;
    d->bz.avail_out = out_avail;
    int ret = BZ2_bzDecompress(&d->bz);
    consumed = in_avail - d->bz.avail_in;
    produced = out_avail - d->bz.avail_out;
    status = bzip2_status(ret);
  }
  napi_value result, counts[2], text;
  if (napi_create_array_with_length(env, 3, &result) != napi_ok ||
      napi_create_double(env, (double)consumed, &counts[0]) != napi_ok ||
      napi_create_double(env, (double)produced, &counts[1]) != napi_ok ||
      napi_create_string_utf8(env, status, NAPI_AUTO_LENGTH, &text) != napi_ok ||
      napi_set_element(env, result, 0, counts[0]) != napi_ok || napi_set_element(env, result, 1, counts[1]) != napi_ok ||
      napi_set_element(env, result, 2, text) != napi_ok)
    return throw_error(env, "cannot return what was decoded");
  return result;
}

// The one argument of restart() and end(): the decoder, or NULL with an error thrown.
static decoder *decoder_arg(napi_env env, napi_callback_info info, const char *usage) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    napi_throw_error(env, NULL, usage);
    return NULL;
  }
  return data;
}

// restart(decoder): a bzip2 decoder whose stream ended, ready for the next one.
static napi_value restart(napi_env env, napi_callback_info info) {
  decoder *d = decoder_arg(env, info, "restart(decoder)");
  if (d == NULL) return NULL;
  if (d->kind != BZIP2 || !d->open) return throw_error(env, "only an open bzip2 decoder restarts");
  BZ2_bzDecompressEnd(&d->bz);
  memset(&d->bz, 0, sizeof d->bz);
  if (BZ2_bzDecompressInit(&d->bz, 0, 0) != BZ_OK) {
    d->open = false;
    return throw_error(env, "cannot start a bzip2 decoder");
  }
  return NULL;
}

// end(decoder)
static napi_value end(napi_env env, napi_callback_info info) {
  decoder *d = decoder_arg(env, info, "end(decoder)");
  if (d != NULL) release(d);
  return NULL;
}

static bool export(napi_env env, napi_value exports, const char *name, napi_callback callback) {
  napi_value fn;
  return napi_create_function(env, name, NAPI_AUTO_LENGTH, callback, NULL, &fn) == napi_ok &&
         napi_set_named_property(env, exports, name, fn) == napi_ok;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  if (!export(env, exports, "xzDecoder", xz_decoder) || !export(env, exports, "bzip2Decoder", bzip2_decoder) ||
      !export(env, exports, "decode", decode) || !export(env, exports, "restart", restart) ||
      !export(env, exports, "end", end))
    return NULL;
  return exports;
}
