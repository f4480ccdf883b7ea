/* evh/export.h — what the shared library exports.
 *
 * libevh.so is built with hidden symbol visibility: only declarations marked EVH_API are in its
 * dynamic symbol table — the C API (evh/evh.h) and the public C++ classes and functions under
 * include/evh/. Everything in evh::detail and under src/ stays inside the library, so it can
 * change without breaking the ABI of a runtime linked against it. The static library exports
 * everything, as static libraries do.
 *
 * Plain C: evh/evh.h includes this header too. */
#ifndef EVH_EXPORT_H
#define EVH_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define EVH_API __attribute__((visibility("default")))
#else
#define EVH_API
#endif

#endif /* EVH_EXPORT_H */
