// cpp-basic: constructors and destructors, scalar and array new/delete,
// std::mutex with std::lock_guard, and exceptions unwinding through frames
// with and without cleanups, with probe counts known in closed form (see
// README.md).
//
//   cpp-basic [R [D [N [A [L]]]]]   defaults R = 5, D = 4, N = 100, A = 10, L = 50
//
// No iostream, string or container is used: their inline code would be
// compiled into this module and add library-dependent counts.

#include <cstdio>
#include <cstdlib>
#include <mutex>

// ---- objects with constructors and destructors, scalar new/delete ---------

class Widget {
public:
    [[gnu::noinline]] explicit Widget(int v) noexcept;
    [[gnu::noinline]] ~Widget();
    [[gnu::noinline]] int value() const;

private:
    int v_;
};

static int live_widgets;

Widget::Widget(int v) noexcept : v_(v * 3 + 1) { live_widgets++; }
Widget::~Widget() { live_widgets--; }
int Widget::value() const { return v_; }

// n iterations, each one `new Widget` and one `delete`: n back-edges.
[[gnu::noinline]] long widget_churn(int n) {
    long acc = 0;
    for (int i = 0; i < n; i++) {
        Widget *w = new Widget(i);
        acc += w->value();
        delete w;
    }
    return acc;
}

// ---- array new/delete of a trivial type (no compiler-generated loops) -----

// Round k (0-based) allocates k + 1 ints with new[], fills them and frees them
// with delete[]: a back-edges of the outer loop, a(a+1)/2 of the inner one.
[[gnu::noinline]] long array_churn(int a) {
    long acc = 0;
    for (int k = 0; k < a; k++) {
        int len = k + 1;
        int *buf = new int[len];
        for (int i = 0; i < len; i++) {
            buf[i] = i * k;
            acc += buf[i];
        }
        delete[] buf;
    }
    return acc;
}

// ---- std::mutex and std::lock_guard ---------------------------------------

class Account {
public:
    [[gnu::noinline]] void deposit(long amount);
    [[gnu::noinline]] long balance();

private:
    std::mutex mu_;
    long balance_ = 0;
};

// One lock_guard construction (so one std::mutex::lock) per call.
void Account::deposit(long amount) {
    std::lock_guard<std::mutex> guard(mu_);
    balance_ += amount;
}

// One more lock_guard construction.
long Account::balance() {
    std::lock_guard<std::mutex> guard(mu_);
    return balance_;
}

// l deposits and one balance read: l + 1 lock acquisitions, l back-edges.
[[gnu::noinline]] long lock_rounds(int l) {
    Account account;
    for (int i = 0; i < l; i++) {
        account.deposit(i + 1);
    }
    return account.balance();
}

// ---- exceptions ----------------------------------------------------------

// The exception object: a trivial aggregate (no constructor call, no
// destructor).
struct Boom {
    int depth;
};

// Has a non-trivial destructor, so every frame holding one has a cleanup
// landing pad that runs ~Tracker and then resumes unwinding.
class Tracker {
public:
    [[gnu::noinline]] explicit Tracker(int id) noexcept;
    [[gnu::noinline]] ~Tracker();
    [[gnu::noinline]] int id() const noexcept;

private:
    int id_;
};

static long trackers_destroyed;

Tracker::Tracker(int id) noexcept : id_(id) {}
Tracker::~Tracker() { trackers_destroyed += id_ + 1; }
int Tracker::id() const noexcept { return id_; }

// Recurses depth times (depth + 1 frames), each frame holding a Tracker. The
// innermost frame throws Boom when do_throw, else returns 0 and every frame
// returns normally.
[[gnu::noinline]] int thrower(int depth, bool do_throw) {
    Tracker t(depth);
    if (depth == 0) {
        if (do_throw) {
            throw Boom{t.id()};
        }
        return 0;
    }
    return thrower(depth - 1, do_throw) + 1;
}

// Holds nothing with a destructor and catches nothing: it has no landing pad,
// so an exception from thrower passes through it without running code in it.
[[gnu::noinline]] int passthrough(int depth, bool do_throw) {
    return thrower(depth, do_throw) * 2;
}

// Catches Boom; always returns normally.
[[gnu::noinline]] int catch_site(int depth, bool do_throw) {
    try {
        return passthrough(depth, do_throw);
    } catch (const Boom &b) {
        return -1 - b.depth;
    }
}

// r rounds, each one throwing call and one normal call: r back-edges.
[[gnu::noinline]] long exception_rounds(int r, int depth) {
    long acc = 0;
    for (int i = 0; i < r; i++) {
        acc += catch_site(depth, true);
        acc += catch_site(depth, false);
    }
    return acc;
}

// ---- driver ------------------------------------------------------------------

// Argument idx as a non-negative int, def when absent, -1 when invalid.
[[gnu::noinline]] int parse_arg(int argc, char **argv, int idx, int def) {
    if (idx >= argc) {
        return def;
    }
    char *end = nullptr;
    long v = std::strtol(argv[idx], &end, 10);
    if (end == argv[idx] || *end != '\0' || v < 0 || v > 1000000L) {
        return -1;
    }
    return static_cast<int>(v);
}

int main(int argc, char **argv) {
    int r = parse_arg(argc, argv, 1, 5);
    int d = parse_arg(argc, argv, 2, 4);
    int n = parse_arg(argc, argv, 3, 100);
    int a = parse_arg(argc, argv, 4, 10);
    int l = parse_arg(argc, argv, 5, 50);
    if (argc > 6 || r < 0 || d < 0 || d > 10000 || n < 0 || a < 0 || a > 10000 || l < 0) {
        std::fprintf(stderr, "usage: cpp-basic [R [D<=10000 [N [A<=10000 [L]]]]]\n");
        return 2;
    }
    long widgets = widget_churn(n);
    std::printf("widgets %d sum %ld live %d\n", n, widgets, live_widgets);
    std::printf("arrays %d sum %ld\n", a, array_churn(a));
    std::printf("locks %d balance %ld\n", l, lock_rounds(l));
    long ex = exception_rounds(r, d);
    std::printf("exceptions %d x depth %d sum %ld trackers %ld\n", r, d, ex, trackers_destroyed);
    return 0;
}
