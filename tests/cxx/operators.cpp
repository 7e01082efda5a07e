// Every C++17 operator new/delete form, run under LD_PRELOAD of each hakozuna library (and
// under plain libstdc++, where every check must pass too); tests/surface.rs runs it.
//
// Checks: each of the 20 mangled operators resolves into the preloaded library (with
// HZ_EXPECT_PRELOAD=1); each form returns a usable, correctly aligned block and takes it back;
// new-expressions of alignas(64) and alignas(4096) types, single and array; a new_handler that
// frees a reserve is called and the allocation then succeeds (address space capped with
// RLIMIT_AS); std::bad_alloc is thrown and caught for an impossible size by every throwing
// form, with and without a handler that gives up; the nothrow forms return nullptr, also when
// the handler throws; blocks deleted on another thread.
#include <dlfcn.h>
#include <malloc.h>
#include <sys/resource.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

static int failures = 0;
#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
            failures++;                                                               \
        }                                                                             \
    } while (0)

static bool aligned_to(const void *p, std::size_t a) {
    return (reinterpret_cast<std::uintptr_t>(p) & (a - 1)) == 0;
}

static const char *const kSymbols[] = {
    "_Znwm",
    "_Znam",
    "_ZdlPv",
    "_ZdaPv",
    "_ZdlPvm",
    "_ZdaPvm",
    "_ZnwmRKSt9nothrow_t",
    "_ZnamRKSt9nothrow_t",
    "_ZdlPvRKSt9nothrow_t",
    "_ZdaPvRKSt9nothrow_t",
    "_ZnwmSt11align_val_t",
    "_ZnamSt11align_val_t",
    "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_ZnamSt11align_val_tRKSt9nothrow_t",
    "_ZdlPvSt11align_val_t",
    "_ZdaPvSt11align_val_t",
    "_ZdlPvmSt11align_val_t",
    "_ZdaPvmSt11align_val_t",
    "_ZdlPvSt11align_val_tRKSt9nothrow_t",
    "_ZdaPvSt11align_val_tRKSt9nothrow_t",
};

static void check_resolution() {
    const char *want = std::getenv("HZ_EXPECT_LIB");
    if (!want) want = "hakozuna";
    for (const char *s : kSymbols) {
        void *f = dlsym(RTLD_DEFAULT, s);
        Dl_info info;
        if (!f || !dladdr(f, &info) || !info.dli_fname || !std::strstr(info.dli_fname, want)) {
            std::fprintf(stderr, "FAIL: %s resolves into %s, not the preloaded %s library\n", s,
                         f && dladdr(f, &info) && info.dli_fname ? info.dli_fname : "(none)",
                         want);
            failures++;
        }
    }
}

struct alignas(64) Line {
    unsigned char b[64];
    Line() { std::memset(b, 0x5a, sizeof b); }
    ~Line() { b[0] = 0; }
};
struct alignas(4096) Page {
    unsigned char b[4096];
    Page() { std::memset(b, 0xa5, sizeof b); }
    ~Page() { b[0] = 0; }
};
struct Plain {
    long v[5];
    ~Plain() { v[0] = 0; }
};

// Each form called by name, with the matching delete forms.
static void every_form() {
    for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(24), std::size_t(3000),
                          std::size_t(70000), std::size_t(1) << 20}) {
        void *p = ::operator new(n);
        CHECK(p && aligned_to(p, 16));
        std::memset(p, 1, n);
        ::operator delete(p);
        p = ::operator new[](n);
        CHECK(p && aligned_to(p, 16));
        std::memset(p, 2, n);
        ::operator delete[](p);
        p = ::operator new(n);
        ::operator delete(p, n);
        p = ::operator new[](n);
        ::operator delete[](p, n);
        p = ::operator new(n, std::nothrow);
        CHECK(p != nullptr);
        ::operator delete(p, std::nothrow);
        p = ::operator new[](n, std::nothrow);
        CHECK(p != nullptr);
        ::operator delete[](p, std::nothrow);
        for (std::size_t a : {std::size_t(8), std::size_t(16), std::size_t(32), std::size_t(64),
                              std::size_t(256), std::size_t(4096), std::size_t(16384),
                              std::size_t(1) << 21}) {
            std::align_val_t al{a};
            p = ::operator new(n, al);
            CHECK(p && aligned_to(p, a));
            std::memset(p, 3, n);
            ::operator delete(p, al);
            p = ::operator new[](n, al);
            CHECK(p && aligned_to(p, a));
            ::operator delete[](p, al);
            p = ::operator new(n, al);
            ::operator delete(p, n, al);
            p = ::operator new[](n, al);
            ::operator delete[](p, n, al);
            p = ::operator new(n, al, std::nothrow);
            CHECK(p && aligned_to(p, a));
            ::operator delete(p, al, std::nothrow);
            p = ::operator new[](n, al, std::nothrow);
            CHECK(p && aligned_to(p, a));
            ::operator delete[](p, al, std::nothrow);
        }
    }
    // Null is accepted by every delete.
    ::operator delete(nullptr);
    ::operator delete[](nullptr);
    ::operator delete(nullptr, std::nothrow);
    ::operator delete(nullptr, std::align_val_t{64});
}

// New-expressions: the compiler picks the forms (aligned ones for over-aligned types, sized
// deletes for complete types).
static void expressions() {
    std::vector<Line *> lines;
    std::vector<Page *> pages;
    for (int i = 0; i < 2000; i++) {
        Line *l = new Line;
        CHECK(aligned_to(l, 64) && l->b[63] == 0x5a);
        lines.push_back(l);
        if (i % 20 == 0) {
            Page *p = new Page;
            CHECK(aligned_to(p, 4096) && p->b[4095] == 0xa5);
            pages.push_back(p);
        }
    }
    for (Line *l : lines) delete l;
    for (Page *p : pages) delete p;
    Line *la = new Line[33];
    CHECK(aligned_to(la, 64) && la[32].b[0] == 0x5a);
    delete[] la;
    Page *pa = new Page[5];
    CHECK(aligned_to(pa, 4096) && pa[4].b[0] == 0xa5);
    delete[] pa;
    Line *ln = new (std::nothrow) Line;
    CHECK(ln && aligned_to(ln, 64));
    delete ln;
    Plain *pl = new Plain[7];
    delete[] pl;
    std::string s;
    for (int i = 0; i < 10000; i++) s += "hakozuna";
    CHECK(s.size() == 80000);
}

static std::size_t impossible() { return std::size_t(1) << 62; }

static int handler_calls = 0;
static void *reserve = nullptr;
static void free_reserve() {
    handler_calls++;
    std::free(reserve);
    reserve = nullptr;
    std::set_new_handler(nullptr);
}
static void give_up() {
    handler_calls++;
    std::set_new_handler(nullptr);
}
[[noreturn]] static void throw_bad_alloc() {
    handler_calls++;
    throw std::bad_alloc();
}

static long vm_bytes() {
    FILE *f = std::fopen("/proc/self/statm", "r");
    long pages = 0;
    if (f) {
        if (std::fscanf(f, "%ld", &pages) != 1) pages = 0;
        std::fclose(f);
    }
    return pages * 4096;
}

// A new_handler that frees a reserve is called once and the allocation then succeeds.
static void handler_frees_reserve() {
    const std::size_t big = std::size_t(256) << 20;
    reserve = std::malloc(big);
    CHECK(reserve != nullptr);
    std::memset(reserve, 1, 4096);
    struct rlimit old;
    CHECK(getrlimit(RLIMIT_AS, &old) == 0);
    struct rlimit lim = old;
    // Room for one more block of `big`, not two; the reserve gives back its mapping when
    // freed (a block this large is unmapped, not cached).
    lim.rlim_cur = vm_bytes() + big + (big / 2);
    CHECK(setrlimit(RLIMIT_AS, &lim) == 0);
    void *hold = std::malloc(big);  // fills the room
    CHECK(hold != nullptr);
    handler_calls = 0;
    std::set_new_handler(free_reserve);
    char *p = nullptr;
    try {
        p = new char[big];
    } catch (const std::bad_alloc &) {
        std::fprintf(stderr, "FAIL: bad_alloc although the handler freed the reserve\n");
        failures++;
    }
    CHECK(handler_calls == 1);
    CHECK(p != nullptr);
    if (p) {
        p[0] = 1;
        p[big - 1] = 2;
    }
    delete[] p;
    std::free(hold);
    std::set_new_handler(nullptr);
    CHECK(setrlimit(RLIMIT_AS, &old) == 0);
}

// True if `f` throws std::bad_alloc (a block it returned instead is leaked: a failure).
template <typename F>
static bool throws_bad_alloc(F f) {
    try {
        volatile void *p = f();
        (void)p;
        return false;
    } catch (const std::bad_alloc &) {
        return true;
    }
}

static void bad_alloc_paths() {
    std::size_t n = impossible();
    std::align_val_t al{64};
    // No handler: bad_alloc from every throwing form, nullptr from every nothrow form.
    CHECK(throws_bad_alloc([&] { return ::operator new(n); }));
    CHECK(throws_bad_alloc([&] { return ::operator new[](n); }));
    CHECK(throws_bad_alloc([&] { return ::operator new(n, al); }));
    CHECK(throws_bad_alloc([&] { return ::operator new[](n, al); }));
    CHECK(throws_bad_alloc([&] { return ::operator new(16, std::align_val_t{48}); }));
    CHECK(::operator new(n, std::nothrow) == nullptr);
    CHECK(::operator new[](n, std::nothrow) == nullptr);
    CHECK(::operator new(n, al, std::nothrow) == nullptr);
    CHECK(::operator new[](n, al, std::nothrow) == nullptr);
    // A new-expression too.
    bool caught = false;
    try {
        char *p = new char[n];
        delete[] p;
    } catch (const std::bad_alloc &e) {
        caught = std::strlen(e.what()) > 0;
    }
    CHECK(caught);
    // A handler that gives up (uninstalls itself): called once, then bad_alloc.
    handler_calls = 0;
    std::set_new_handler(give_up);
    CHECK(throws_bad_alloc([&] { return ::operator new(n); }));
    CHECK(handler_calls == 1);
    handler_calls = 0;
    std::set_new_handler(give_up);
    CHECK(throws_bad_alloc([&] { return ::operator new[](n, al); }));
    CHECK(handler_calls == 1);
    // nothrow with a handler that gives up, or that throws: nullptr, handler called.
    handler_calls = 0;
    std::set_new_handler(give_up);
    CHECK(::operator new(n, std::nothrow) == nullptr);
    CHECK(handler_calls == 1);
    handler_calls = 0;
    std::set_new_handler(throw_bad_alloc);
    CHECK(::operator new(n, std::nothrow) == nullptr);
    CHECK(::operator new[](n, std::nothrow) == nullptr);
    CHECK(::operator new(n, al, std::nothrow) == nullptr);
    CHECK(::operator new[](n, al, std::nothrow) == nullptr);
    CHECK(handler_calls == 4);
    // A throwing handler under a throwing form: its bad_alloc reaches the caller.
    CHECK(throws_bad_alloc([&] { return ::operator new(n); }));
    CHECK(handler_calls == 5);
    std::set_new_handler(nullptr);
    // Ordinary allocation still works afterwards.
    void *p = ::operator new(100);
    CHECK(p != nullptr);
    ::operator delete(p, std::size_t(100));
}

// Blocks allocated by one thread and deleted by another, every size tier.
static void across_threads() {
    std::atomic<int> bad{0};
    std::vector<std::vector<void *>> made(4);
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; t++)
        ts.emplace_back([&, t] {
            for (int i = 0; i < 20000; i++) {
                std::size_t n = (i % 7 == 0) ? 5000 + i : 16 + (i * 37) % 2000;
                if (i % 1000 == 0) n = 300000;
                void *p = (i & 1) ? ::operator new(n) : ::operator new(n, std::align_val_t{64});
                if (!p) bad++;
                made[t].push_back(p);
            }
        });
    for (auto &t : ts) t.join();
    ts.clear();
    for (int t = 0; t < 4; t++)
        ts.emplace_back([&, t] {
            auto &v = made[(t + 1) % 4];
            for (std::size_t i = 0; i < v.size(); i++) {
                if (i & 1)
                    ::operator delete(v[i]);
                else
                    ::operator delete(v[i], std::align_val_t{64});
            }
        });
    for (auto &t : ts) t.join();
    CHECK(bad == 0);
}

int main() {
    if (std::getenv("HZ_EXPECT_PRELOAD")) check_resolution();
    every_form();
    expressions();
    bad_alloc_paths();
    handler_frees_reserve();
    across_threads();
    if (failures) {
        std::printf("%d FAILURES\n", failures);
        return 1;
    }
    std::printf("CXX OK\n");
    return 0;
}
