-- The reserve path's conditional stock update (inventory_service/storage.py, reserve()), on one row:
-- pgbench -M prepared -D product=BENCH-HOT. One statement per transaction (autocommit).
\set q 1
UPDATE products SET available_quantity = available_quantity - :q, reserved_quantity = reserved_quantity + :q, updated_at = now() WHERE product_id = :product AND available_quantity >= :q RETURNING price;
