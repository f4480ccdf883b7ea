/* evh/version.h — the version of the evh headers, for C and C++.
 *
 * The one place the version is written: CMakeLists.txt reads it from here for the project, the
 * shared library's VERSION, the CMake package and evh.pc. `evh_version()` (evh/evh.h) returns
 * the version of the library actually linked, which may be newer than these headers.
 *
 * Versions 0.y.z: a new minor version may break the API and the ABI (the shared library's soname
 * is libevh.so.0.y); a new patch version does not. */
#ifndef EVH_VERSION_H
#define EVH_VERSION_H

#define EVH_VERSION_MAJOR 0
#define EVH_VERSION_MINOR 3
#define EVH_VERSION_PATCH 0

#define EVH_VERSION_STRINGIFY_(x) #x
#define EVH_VERSION_STRINGIFY(x) EVH_VERSION_STRINGIFY_(x)
/* "0.3.0" */
#define EVH_VERSION_STRING                 \
  EVH_VERSION_STRINGIFY(EVH_VERSION_MAJOR) \
  "." EVH_VERSION_STRINGIFY(EVH_VERSION_MINOR) "." EVH_VERSION_STRINGIFY(EVH_VERSION_PATCH)
/* 0xMMmmpp: compare with `>=` (EVH_VERSION_HEX >= 0x000200 for 0.2.0 or later). */
#define EVH_VERSION_HEX ((EVH_VERSION_MAJOR << 16) | (EVH_VERSION_MINOR << 8) | EVH_VERSION_PATCH)

#endif /* EVH_VERSION_H */
