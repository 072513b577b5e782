// madvise(MADV_HUGEPAGE) on the memory behind a typed array, for lib/system/huge-pages.ts: Node
// has no way to give that advice, and without it the kernel backs the image's gigabytes of fresh
// memory with 4 KiB pages, one page fault each, where transparent huge pages are in "madvise" mode
// (Debian's default). Built by scripts/native.ts with the C compiler against Node-API alone, so the
// same file loads in every Node 24 process and worker thread.
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

// adviseHugePages(view: Uint8Array): boolean. The whole pages inside the view are advised; true when
// the kernel took the advice (false where it has no transparent huge pages, or no whole page).
static napi_value advise_huge_pages(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value result;
  bool taken = false;
  bool is_typed_array = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == 1 &&
      napi_is_typedarray(env, argv[0], &is_typed_array) == napi_ok && is_typed_array) {
    napi_typedarray_type type;
    size_t length = 0;
    void *data = NULL;
    if (napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL) == napi_ok &&
        type == napi_uint8_array && data != NULL) {
      uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
      uintptr_t start = ((uintptr_t)data + page - 1) & ~(page - 1);
      uintptr_t end = ((uintptr_t)data + length) & ~(page - 1);
      taken = end > start && madvise((void *)start, end - start, MADV_HUGEPAGE) == 0;
    }
  }
  napi_get_boolean(env, taken, &result);
  return result;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value fn;
  if (napi_create_function(env, "adviseHugePages", NAPI_AUTO_LENGTH, advise_huge_pages, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "adviseHugePages", fn) != napi_ok)
    return NULL;
  return exports;
}
