#include "shapes.h"

// Every destructor has a body (it counts itself), so none is trivial and
// clang never emits a derived destructor as an alias of its base's one.
namespace {
DestroyCounts counts;
}

DestroyCounts destroy_counts() { return counts; }

Shape::Shape() noexcept = default;
Shape::~Shape() { counts.shape++; }

Rect::Rect(int w, int h) noexcept : w_(w), h_(h) {}
Rect::~Rect() { counts.rect++; }
long Rect::area2() const { return 2L * w_ * h_; }

Square::Square(int side) noexcept : Rect(side, side) {}
Square::~Square() { counts.square++; }

Triangle::Triangle(int base, int height) noexcept : base_(base), height_(height) {}
Triangle::~Triangle() { counts.triangle++; }
long Triangle::area2() const { return static_cast<long>(base_) * height_; }

Shape *make_shape(int i) {
    switch (i % 3) {
    case 0:
        return new Rect(i % 7 + 1, i % 5 + 1);
    case 1:
        return new Square(i % 4 + 1);
    default:
        return new Triangle(i % 6 + 1, i % 8 + 2);
    }
}

Scene::Scene(int capacity) : shapes_(new Shape *[capacity > 0 ? capacity : 1]), capacity_(capacity), size_(0) {}

Scene::~Scene() {
    for (int i = 0; i < size_; i++) {
        delete shapes_[i];
    }
    delete[] shapes_;
}

bool Scene::add(Shape *s) {
    if (size_ >= capacity_) {
        delete s;
        return false;
    }
    shapes_[size_++] = s;
    return true;
}

long Scene::total_area2() const {
    long total = 0;
    for (int i = 0; i < size_; i++) {
        total += shapes_[i]->area2();
    }
    return total;
}

int Scene::size() const { return size_; }
