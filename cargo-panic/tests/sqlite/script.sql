-- tests/sqlite.rs runs this through a plain and an instrumented build of the
-- SQLite shell (tests/sqlite/shell.c) and compares their output byte for byte.
-- Everything is deterministic: no random(), no dates, every result ordered.

CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL);
CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customer(id),
  amount REAL NOT NULL,
  status TEXT NOT NULL
);

BEGIN;
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 50)
INSERT INTO customer
SELECT x, 'customer-' || printf('%03d', x),
       CASE x % 4 WHEN 0 THEN 'north' WHEN 1 THEN 'south' WHEN 2 THEN 'east' ELSE 'west' END
FROM n;
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 2000)
INSERT INTO orders
SELECT x, 1 + (x * 7919) % 50, ((x * 104729) % 10000) / 100.0,
       CASE WHEN x % 11 = 0 THEN 'cancelled' WHEN x % 3 = 0 THEN 'open' ELSE 'shipped' END
FROM n;
COMMIT;

SELECT count(*), sum(amount), min(amount), max(amount) FROM orders;

CREATE INDEX orders_by_customer ON orders(customer_id, amount);

-- Join + aggregate + ORDER BY
SELECT c.region, count(*), round(sum(o.amount), 2), round(avg(o.amount), 4)
FROM orders o JOIN customer c ON c.id = o.customer_id
GROUP BY c.region ORDER BY c.region;

-- Top customers, using the index for the per-customer lookups
SELECT c.name, count(o.id), round(sum(o.amount), 2) AS total
FROM customer c LEFT JOIN orders o ON o.customer_id = c.id AND o.status <> 'cancelled'
GROUP BY c.id ORDER BY total DESC, c.name LIMIT 10;

SELECT status, count(*) FROM orders GROUP BY status ORDER BY status;

-- A view with a window function
CREATE VIEW ranked AS
SELECT o.id, o.customer_id, o.amount,
       row_number() OVER (PARTITION BY o.customer_id ORDER BY o.amount DESC, o.id) AS rank
FROM orders o;
SELECT customer_id, id, amount FROM ranked WHERE rank = 1 ORDER BY customer_id LIMIT 15;

UPDATE orders SET amount = amount * 1.5, status = 'repriced' WHERE status = 'open' AND amount < 20;
SELECT changes();
DELETE FROM orders WHERE status = 'cancelled';
SELECT changes();
SELECT status, count(*), round(sum(amount), 2) FROM orders GROUP BY status ORDER BY status;

-- Subquery, string functions, HAVING
SELECT region, group_concat(name, ',')
FROM (SELECT c.region, c.name FROM customer c
      WHERE (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) > 36
      ORDER BY c.name)
GROUP BY region HAVING count(*) > 1 ORDER BY region;

SELECT customer_id, count(*) FROM ranked WHERE amount BETWEEN 40 AND 41 GROUP BY customer_id
ORDER BY customer_id;

PRAGMA integrity_check;
