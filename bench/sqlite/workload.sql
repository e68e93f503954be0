-- bench/sqlite.sh: an insert/query workload for the SQLite shell
-- (cargo-panic/tests/sqlite/shell.c), in an in-memory database. Deterministic:
-- every build must print the same bytes. Sized so the plain -O2 build takes
-- more than 2 s on the 2-core benchmark machine.

CREATE TABLE item (id INTEGER PRIMARY KEY, grp INTEGER NOT NULL, name TEXT NOT NULL, price REAL NOT NULL);
CREATE TABLE sale (id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL, qty INTEGER NOT NULL, day INTEGER NOT NULL);

-- Inserts: 40 000 items and 600 000 sales, in two transactions.
BEGIN;
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 40000)
INSERT INTO item SELECT x, x % 97, 'item-' || printf('%06d', (x * 7919) % 1000003), ((x * 104729) % 100000) / 100.0 FROM n;
COMMIT;
BEGIN;
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 600000)
INSERT INTO sale SELECT x, 1 + (x * 48271) % 40000, 1 + x % 9, x % 365 FROM n;
COMMIT;

-- Indexes (sorting) and row-by-row inserts through an index.
CREATE INDEX sale_item ON sale(item_id, day);
CREATE INDEX item_name ON item(name);
CREATE TABLE daily (day INTEGER PRIMARY KEY, revenue REAL);
INSERT INTO daily SELECT s.day, sum(s.qty * i.price) FROM sale s JOIN item i ON i.id = s.item_id GROUP BY s.day;

-- Queries: joins, aggregates, sorting, a correlated subquery, window functions.
SELECT (SELECT count(*) FROM sale), (SELECT sum(qty) FROM sale), (SELECT round(sum(revenue), 2) FROM daily);
SELECT i.grp, count(*), sum(s.qty), round(sum(s.qty * i.price), 2)
FROM sale s JOIN item i ON i.id = s.item_id GROUP BY i.grp ORDER BY 4 DESC LIMIT 10;
SELECT i.name, (SELECT sum(qty) FROM sale s WHERE s.item_id = i.id) AS sold
FROM item i WHERE i.grp = 7 ORDER BY sold DESC, i.name LIMIT 10;
SELECT day, round(revenue, 2), round(avg(revenue) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW), 2)
FROM daily ORDER BY revenue DESC LIMIT 10;
SELECT name FROM item WHERE name LIKE 'item-0001%' ORDER BY name;
SELECT count(DISTINCT item_id), count(DISTINCT day * 100 + qty) FROM sale;
SELECT item_id, day, qty FROM sale ORDER BY qty * day DESC, id LIMIT 5;

-- Updates and deletes through the indexes, then the queries again.
UPDATE item SET price = price * 1.1 WHERE grp % 5 = 0;
DELETE FROM sale WHERE day % 7 = 3;
UPDATE sale SET qty = qty + 1 WHERE item_id % 13 = 0;
SELECT count(*), sum(qty) FROM sale;
SELECT i.grp, count(*), round(sum(s.qty * i.price), 2)
FROM sale s JOIN item i ON i.id = s.item_id GROUP BY i.grp ORDER BY 3 DESC LIMIT 5;
PRAGMA integrity_check;
