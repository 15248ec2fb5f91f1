-- The reserve path's conditional stock update (inventory_service/storage.py, reserve()), on a row picked
-- at random among 100 (BENCH-001 .. BENCH-100). One statement per transaction (autocommit).
\set q 1
\set n random(1, 100)
UPDATE products SET available_quantity = available_quantity - :q, reserved_quantity = reserved_quantity + :q, updated_at = now() WHERE product_id = 'BENCH-' || lpad(:n::text, 3, '0') AND available_quantity >= :q RETURNING price;
