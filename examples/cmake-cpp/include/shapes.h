// Shapes with integer areas and a Scene that owns them. See README.md for
// the probe counts of these functions.
#pragma once

// How many destructors of each class have run. Destroying a Square runs
// ~Square, ~Rect and ~Shape, so it adds one to square, rect and shape.
struct DestroyCounts {
    long shape;
    long rect;
    long square;
    long triangle;
};
DestroyCounts destroy_counts();

class Shape {
public:
    Shape() noexcept;
    virtual ~Shape();
    // Twice the area, so every shape's value is an exact integer.
    virtual long area2() const = 0;
};

class Rect : public Shape {
public:
    Rect(int w, int h) noexcept;
    ~Rect() override;
    long area2() const override;

private:
    int w_;
    int h_;
};

class Square : public Rect {
public:
    explicit Square(int side) noexcept;
    ~Square() override;
};

class Triangle : public Shape {
public:
    Triangle(int base, int height) noexcept;
    ~Triangle() override;
    long area2() const override;

private:
    int base_;
    int height_;
};

// Makes shape i: a Rect when i % 3 == 0, a Square when i % 3 == 1, a
// Triangle when i % 3 == 2. Exactly one operator new per call.
Shape *make_shape(int i);

// Owns up to `capacity` shapes in an array made with new[].
class Scene {
public:
    explicit Scene(int capacity);
    ~Scene();
    Scene(const Scene &) = delete;
    Scene &operator=(const Scene &) = delete;

    // Takes ownership of s; returns false (and deletes s) when full.
    bool add(Shape *s);
    // Sum of area2() over the shapes: one area2 call and one loop back-edge
    // per shape.
    long total_area2() const;
    int size() const;

private:
    Shape **shapes_;
    int capacity_;
    int size_;
};
