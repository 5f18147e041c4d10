// A minimal assertion harness so the runtime tests need nothing but a compiler.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "qdrt.h"

namespace qdtest {
struct Case {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<Case>& cases() {
  static std::vector<Case> v;
  return v;
}
inline int failures = 0;
struct Register {
  Register(const char* n, std::function<void()> f) { cases().push_back({n, std::move(f)}); }
};
// Runs every case whose name starts with the filter (argv[1]); "env"/"capacity"
// cases only run when asked for, since they need a special environment.
inline int run_all(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : "";
  int ran = 0;
  for (auto& c : cases()) {
    bool special = std::strncmp(c.name, "env", 3) == 0 || std::strncmp(c.name, "capacity", 8) == 0;
    if (*filter == '\0' ? special : std::strncmp(c.name, filter, std::strlen(filter)) != 0) continue;
    int before = failures;
    c.fn();
    ++ran;
    std::printf("%s %s\n", failures == before ? "PASS" : "FAIL", c.name);
  }
  std::printf("%d cases, %d failed checks\n", ran, failures);
  return (failures == 0 && ran > 0) ? 0 : 1;
}
}  // namespace qdtest

#define QD_TEST(name) \
  static void name(); \
  static qdtest::Register reg_##name(#name, name); \
  static void name()

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::printf("  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
      ++qdtest::failures;                                                        \
    }                                                                            \
  } while (0)

#define CHECK_OK(expr) CHECK((expr) == qdSuccess)
#define CHECK_ERR(expr, code) CHECK((expr) == (code))

#define QD_TEST_MAIN \
  int main(int argc, char** argv) { return qdtest::run_all(argc, argv); }
